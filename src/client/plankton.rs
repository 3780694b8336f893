//! The image registry (Plankton) over HTTP, on the same client and retries as the object
//! store: registration follows `.meta` files.

use super::pithos::PithosClient;
use super::*;
use crate::api::plankton::{self, py_bool};
use reqwest::{Method, Response};
use std::collections::BTreeMap;

fn image_headers(r: &Response) -> Option<Image> {
    Image::from_headers(
        r.headers()
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v))),
    )
}

impl PithosClient {
    fn images_url(&self, rest: &str) -> Result<String> {
        match &self.images {
            Some(base) => Ok(format!("{base}/{rest}")),
            None => Err(StorageError::protocol(
                "-",
                rest,
                "the cloud's catalog has no image service",
            )),
        }
    }
}

impl PithosClient {
    /// Sends image headers without a body; the reply's headers are the image as the registry
    /// now has it.
    async fn send_image(&self, method: Method, url: String, headers: Vec<(String, String)>) -> Result<Image> {
        let r = self
            .send(method.clone(), url.clone(), &[200, 201], |mut b| {
                for (k, v) in &headers {
                    b = b.header(k, v);
                }
                b.header("content-length", "0")
            })
            .await?;
        image_headers(&r).ok_or_else(|| StorageError::protocol(method.as_str(), &url, "no image id in the reply"))
    }

    /// Register and update merge the properties they are sent into those already there (as
    /// the original does); the reply shows the result, and what `wanted` does not have is
    /// deleted by one more update. (A registration that keeps its keys, the common case,
    /// costs no request more.)
    async fn prune(&self, img: Image, wanted: &BTreeMap<String, String>) -> Result<Image> {
        let stale = plankton::removal_headers(&img.properties, wanted);
        if stale.is_empty() {
            return Ok(img);
        }
        let url = self.images_url(&format!("images/{}", encode(&img.id)))?;
        self.send_image(Method::PUT, url, stale).await
    }
}

impl Registry for PithosClient {
    async fn image_of(&self, container: &str, name: &str) -> Result<Option<Image>> {
        if self.images.is_none() {
            // A cloud without a registry has no images; files work as files.
            return Ok(None);
        }
        let uuid = match self.send(Method::HEAD, self.url(container, name), &[200], |b| b).await {
            Ok(r) => r
                .headers()
                .get(crate::api::pithos::X_OBJECT_UUID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if uuid.is_empty() {
            return Ok(None);
        }
        let url = self.images_url(&format!("images/{}", encode(&uuid)))?;
        match self.send(Method::HEAD, url, &[200], |b| b).await {
            Ok(r) => Ok(image_headers(&r)),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn register(&self, container: &str, name: &str, reg: &Registration) -> Result<Image> {
        let url = self.images_url("images/")?;
        let image_name = reg.name.clone().unwrap_or_else(|| name.to_string());
        let location = plankton::location(&self.account, container, name);
        let mut fields = vec![
            ("name", image_name.as_str()),
            ("location", location.as_str()),
            ("is-public", py_bool(reg.is_public)),
        ];
        if let Some(f) = &reg.disk_format {
            fields.push(("disk-format", f));
        }
        if let Some(f) = &reg.container_format {
            fields.push(("container-format", f));
        }
        let img = self
            .send_image(Method::POST, url, plankton::request_headers(&fields, &reg.properties))
            .await?;
        self.prune(img, &reg.properties).await
    }

    async fn update(&self, img: &Image) -> Result<Image> {
        let url = self.images_url(&format!("images/{}", encode(&img.id)))?;
        let fields = [
            ("name", img.name.as_str()),
            ("disk-format", &img.disk_format),
            ("container-format", &img.container_format),
            ("status", &img.status),
            ("is-public", py_bool(img.is_public)),
        ];
        let updated = self
            .send_image(Method::PUT, url, plankton::request_headers(&fields, &img.properties))
            .await?;
        self.prune(updated, &img.properties).await
    }

    async fn own_images(&self) -> Result<Vec<(String, String, Image)>> {
        Ok(self
            .visible_images()
            .await?
            .into_iter()
            .filter(|i| i.owner == self.account)
            .filter_map(|i| {
                let (acc, container, path) = plankton::parse_location(&i.location)?;
                (acc == self.account).then_some((container, path, i))
            })
            .collect())
    }

    async fn visible_images(&self) -> Result<Vec<Image>> {
        if self.images.is_none() {
            return Ok(vec![]);
        }
        let url = self.images_url("images/detail")?;
        let r = self.send(Method::GET, url, &[200], |b| b).await?;
        let list: Vec<plankton::ImageDetail> = super::pithos::json_upto(r, 64 << 20, "GET", "images/detail").await?;
        Ok(list.into_iter().map(Image::from).collect())
    }

    async fn unregister(&self, id: &str) -> Result<()> {
        let url = self.images_url(&format!("images/{}", encode(id)))?;
        match self.send(Method::DELETE, url, &[200, 204], |b| b).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn encode(s: &str) -> String {
    crate::api::pithos::encode_path(s)
}
