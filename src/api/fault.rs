//! The JSON fault body every API replies with on error (spec/pithos.md §3.2):
//! `{"itemNotFound": {"code": 404, "message": "...", "details": ""}}`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultDetail {
    pub code: u16,
    pub message: String,
    #[serde(default)]
    pub details: String,
}

/// The fault name for a status code.
pub fn fault_name(status: u16) -> &'static str {
    match status {
        400 => "badRequest",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "itemNotFound",
        405 => "notAllowed",
        409 => "conflict",
        411 => "lengthRequired",
        412 => "preconditionFailed",
        413 => "requestEntityTooLarge",
        416 => "rangeNotSatisfiable",
        422 => "unprocessableEntity",
        501 => "notImplemented",
        503 => "serviceUnavailable",
        _ => "internalServerError",
    }
}

pub fn fault_body(status: u16, message: &str) -> String {
    let mut m = BTreeMap::new();
    m.insert(
        fault_name(status),
        FaultDetail {
            code: status,
            message: message.to_string(),
            details: String::new(),
        },
    );
    serde_json::to_string(&m).unwrap_or_default()
}

/// Reads the message out of a fault body, if it is one.
pub fn parse_fault(body: &[u8]) -> Option<FaultDetail> {
    let m: BTreeMap<String, FaultDetail> = serde_json::from_slice(body).ok()?;
    m.into_values().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let b = fault_body(404, "Object does not exist");
        assert_eq!(
            b,
            r#"{"itemNotFound":{"code":404,"message":"Object does not exist","details":""}}"#
        );
        assert_eq!(parse_fault(b.as_bytes()).unwrap().message, "Object does not exist");
    }
}
