//! `imgfs serve`'s settings from three places, the nearer winning: the command line, then the
//! environment (`IMGFS_LISTEN`, `IMGFS_DATA`, …, read by the argument parser), then a TOML
//! file (`--config FILE` or `IMGFS_CONFIG`), then the defaults. The file's keys are the
//! options' names with `_` for `-`; an unknown key or a wrong type is an error naming the file.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What was given somewhere; `None`: not there. Also `imgfs serve`'s options (each with its
/// environment variable), so the two lists cannot drift apart.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct ServeSettings {
    /// Data directory: short for --meta sqlite:DIR --blocks dir:DIR/blocks [default:
    /// ~/.local/share/imgfs]
    #[arg(long, env = "IMGFS_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Metadata database: sqlite:DIR
    #[arg(long, env = "IMGFS_META", value_name = "URL")]
    pub meta: Option<String>,
    /// Block store: dir:PATH or s3://BUCKET[/PREFIX] (endpoint and keys from AWS_ENDPOINT_URL,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION; AWS_ALLOW_HTTP=true for plain
    /// http) [default: dir:DIR/blocks beside sqlite:DIR]
    #[arg(long, env = "IMGFS_BLOCKS", value_name = "URL")]
    pub blocks: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "IMGFS_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Connections served at once (more wait to be accepted) [default: 1024]
    #[arg(long, env = "IMGFS_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Seconds a connection's first byte and a request's headers may take, and a kept-alive
    /// connection may idle [default: 20]
    #[arg(long, env = "IMGFS_HEADER_TIMEOUT", value_name = "SECS")]
    pub header_timeout: Option<u64>,
    /// Seconds a request body may send nothing [default: 60]
    #[arg(long, env = "IMGFS_BODY_IDLE_TIMEOUT", value_name = "SECS")]
    pub body_idle_timeout: Option<u64>,
    /// Seconds an uploaded block waits for the object that uses it, and a block nobody
    /// holds is kept, before the garbage collector deletes it [default: 3600]
    #[arg(long, env = "IMGFS_GC_GRACE", value_name = "SECS")]
    pub gc_grace: Option<u64>,
    /// Seconds between garbage collections (0: only at start-up) [default: 600]
    #[arg(long, env = "IMGFS_GC_INTERVAL", value_name = "SECS")]
    pub gc_interval: Option<u64>,
    /// Serve https with this certificate chain (PEM); needs --tls-key
    #[arg(long, env = "IMGFS_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, env = "IMGFS_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
}

/// Everything decided, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serve {
    /// `None`: the caller's default data directory.
    pub data: Option<PathBuf>,
    pub meta: Option<String>,
    pub blocks: Option<String>,
    pub listen: String,
    pub limits_max_connections: usize,
    pub header_timeout: Duration,
    pub body_idle_timeout: Duration,
    pub gc_grace: Duration,
    pub gc_interval: Duration,
    pub tls: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("settings file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0} needs {1}: a certificate and its key go together")]
    Incomplete(&'static str, &'static str),
}

impl ServeSettings {
    pub fn from_file(path: &Path) -> Result<ServeSettings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// These settings, with `lower`'s where these have none.
    pub fn or(self, lower: ServeSettings) -> ServeSettings {
        ServeSettings {
            data: self.data.or(lower.data),
            meta: self.meta.or(lower.meta),
            blocks: self.blocks.or(lower.blocks),
            listen: self.listen.or(lower.listen),
            max_connections: self.max_connections.or(lower.max_connections),
            header_timeout: self.header_timeout.or(lower.header_timeout),
            body_idle_timeout: self.body_idle_timeout.or(lower.body_idle_timeout),
            gc_grace: self.gc_grace.or(lower.gc_grace),
            gc_interval: self.gc_interval.or(lower.gc_interval),
            tls_cert: self.tls_cert.or(lower.tls_cert),
            tls_key: self.tls_key.or(lower.tls_key),
        }
    }

    /// The defaults for what is still missing (they are in `imgfs serve --help`).
    pub fn resolve(self) -> Result<Serve, SettingsError> {
        let secs = |v: Option<u64>, default: u64, least: u64| Duration::from_secs(v.unwrap_or(default).max(least));
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingsError::Incomplete(
                    "--tls-cert (tls_cert)",
                    "--tls-key (tls_key)",
                ))
            }
            (None, Some(_)) => {
                return Err(SettingsError::Incomplete(
                    "--tls-key (tls_key)",
                    "--tls-cert (tls_cert)",
                ))
            }
        };
        Ok(Serve {
            data: self.data,
            meta: self.meta,
            blocks: self.blocks,
            listen: self.listen.unwrap_or_else(|| "127.0.0.1:8080".to_string()),
            limits_max_connections: self.max_connections.unwrap_or(1024).max(1),
            header_timeout: secs(self.header_timeout, 20, 1),
            body_idle_timeout: secs(self.body_idle_timeout, 60, 1),
            gc_grace: secs(self.gc_grace, 3600, 0),
            gc_interval: secs(self.gc_interval, 600, 0),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearer_place_wins_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("serve.toml");
        std::fs::write(&f, "listen = \"0.0.0.0:9000\"\ngc_grace = 60\ndata = \"/srv/imgfs\"\n").unwrap();
        let file = ServeSettings::from_file(&f).unwrap();
        let given = ServeSettings {
            gc_grace: Some(5),
            ..Default::default()
        };
        let s = given.or(file).resolve().unwrap();
        assert_eq!(s.listen, "0.0.0.0:9000", "from the file");
        assert_eq!(s.gc_grace, Duration::from_secs(5), "the command line over the file");
        assert_eq!(s.data.as_deref(), Some(Path::new("/srv/imgfs")));
        assert_eq!(s.gc_interval, Duration::from_secs(600), "the default");
        assert_eq!(s.limits_max_connections, 1024);
        assert!(s.tls.is_none());
    }

    #[test]
    fn a_bad_file_says_where_and_what() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("serve.toml");
        std::fs::write(&f, "listen = \"x\"\ngc_grase = 60\n").unwrap();
        let e = ServeSettings::from_file(&f).unwrap_err().to_string();
        assert!(e.contains("serve.toml") && e.contains("gc_grase"), "{e}");
        std::fs::write(&f, "gc_grace = \"an hour\"\n").unwrap();
        let e = ServeSettings::from_file(&f).unwrap_err().to_string();
        assert!(
            e.contains("serve.toml") && e.contains("line 1") && e.contains("gc_grace"),
            "{e}"
        );
        let e = ServeSettings::from_file(&dir.path().join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read") && e.contains("none.toml"), "{e}");
        let half = ServeSettings {
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        };
        assert!(half.resolve().unwrap_err().to_string().contains("needs --tls-key"));
    }
}
