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

/// The fault of a service that asked the identity service about a token and was refused, as
/// the original's Pithos+ and Plankton answer it: the identity service's own fault forwarded
/// in `details` under the generic name `fault`, its status text as the message:
/// `{"fault": {"code": 401, "message": "UNAUTHORIZED", "details": "{\"unauthorized\": …}"}}`.
pub fn forwarded_fault_body(status: u16, message: &str) -> String {
    let reason = match status {
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        _ => "ERROR",
    };
    let mut m = BTreeMap::new();
    m.insert(
        "fault",
        FaultDetail {
            code: status,
            message: reason.to_string(),
            details: fault_body(status, message),
        },
    );
    serde_json::to_string(&m).unwrap_or_default()
}

/// Reads the message out of a fault body, if it is one (a forwarded fault's inner message).
pub fn parse_fault(body: &[u8]) -> Option<FaultDetail> {
    let m: BTreeMap<String, FaultDetail> = serde_json::from_slice(body).ok()?;
    let (name, f) = m.into_iter().next()?;
    if name == "fault" {
        if let Some(inner) = parse_fault(f.details.as_bytes()) {
            return Some(inner);
        }
    }
    Some(f)
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
        let f = forwarded_fault_body(401, "Invalid token");
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v["fault"]["message"], "UNAUTHORIZED");
        assert_eq!(parse_fault(f.as_bytes()).unwrap().message, "Invalid token");
    }
}
