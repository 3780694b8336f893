//! Property tests of the parsers that take a client's words (the wire module, shared by client
//! and server): none panics on any input, and what we write reads back as it was.
//! (The server's own path and query parsers are property-tested in src/server/pithos.rs.)

use imgfs::api::hashing::BlockHash;
use imgfs::api::metafile;
use imgfs::api::pithos::{parse_content_range, parse_range_header, valid_member, ByteRange, HashmapPut, Sharing};
use imgfs::api::plankton::{Image, CONTAINER_FORMATS, DISK_FORMATS};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// Strings near the grammar (its punctuation and digits), and any string at all.
fn wordish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,40}",
        "(bytes)?[=\\- 0-9,*/]{0,30}",
        "((read|write|READ|own)=[a-z0-9*@.,;= -]{0,12};?){0,4}",
        any::<String>(),
    ]
}

fn member() -> impl Strategy<Value = String> {
    "[a-z0-9@._*-]{1,20}".prop_filter("a valid member", |m| valid_member(m))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn range_headers_never_panic_and_resolve_inside_the_object(v in wordish(), size in 0u64..1 << 40) {
        if let Some(items) = parse_range_header(&v) {
            for it in items {
                if let Some((a, b)) = it.resolve(size) {
                    prop_assert!(a <= b && b < size, "{v:?} on {size}: {a}-{b}");
                }
            }
        }
    }

    #[test]
    fn range_headers_round_trip(items in prop::collection::vec(
        prop_oneof![
            (any::<u64>(), any::<Option<u64>>()).prop_map(|(f, l)| ByteRange::From {
                first: f,
                last: l.map(|l| f.saturating_add(l % 1000)),
            }),
            any::<u64>().prop_map(ByteRange::Suffix),
        ],
        1..20,
    )) {
        let text = items
            .iter()
            .map(|r| match r {
                ByteRange::From { first, last: Some(l) } => format!("{first}-{l}"),
                ByteRange::From { first, last: None } => format!("{first}-"),
                ByteRange::Suffix(n) => format!("-{n}"),
            })
            .collect::<Vec<_>>()
            .join(",");
        prop_assert_eq!(parse_range_header(&format!("bytes={text}")), Some(items));
    }

    #[test]
    fn content_ranges_never_panic_and_are_ordered(v in wordish()) {
        if let Some(cr) = parse_content_range(&v) {
            if let (Some(f), Some(l)) = (cr.first, cr.last) {
                prop_assert!(f <= l);
            }
        }
    }

    #[test]
    fn content_ranges_round_trip(first in any::<u64>(), len in any::<Option<u16>>(), total in any::<Option<u64>>()) {
        let last = len.map(|n| first.saturating_add(n as u64));
        let range = match last {
            Some(l) => format!("{first}-{l}"),
            None => format!("{first}-"),
        };
        let total_s = total.map_or("*".to_string(), |t| t.to_string());
        let cr = parse_content_range(&format!("bytes {range}/{total_s}")).expect("parses");
        prop_assert_eq!((cr.first, cr.last, cr.total), (Some(first), last, total));
    }

    #[test]
    fn sharing_strings_never_panic_and_reparse_to_themselves(v in wordish()) {
        if let Ok(s) = Sharing::parse(&v) {
            // Whatever was accepted is written in a form that reads back the same, and names
            // only valid members (no clause can hide in one).
            let again = Sharing::parse(&s.to_string()).expect("our own output parses");
            prop_assert_eq!(&again, &s);
            for m in s.read.iter().chain(&s.write) {
                prop_assert!(valid_member(m), "{m:?} from {v:?}");
            }
        }
    }

    #[test]
    fn sharing_round_trips(read in prop::collection::vec(member(), 0..5), write in prop::collection::vec(member(), 0..5)) {
        let text = format!("read={}; write={}", read.join(","), write.join(","));
        let text = text.replace("read=; ", "").replace("; write=", if write.is_empty() { "" } else { "; write=" });
        let parsed = Sharing::parse(&text);
        if read.is_empty() && write.is_empty() {
            // (`read=` with nothing after it is an empty member)
            prop_assert!(parsed.is_err() || parsed.unwrap().is_empty());
        } else if let Ok(s) = parsed {
            for m in &write {
                prop_assert!(s.can_write(m));
            }
            for m in &read {
                prop_assert!(s.can_read(m));
            }
            prop_assert_eq!(Sharing::parse(&s.to_string()).unwrap(), s);
        }
    }

    #[test]
    fn hashmap_bodies_never_panic(body in prop_oneof![
        any::<Vec<u8>>(),
        "\\{\"bytes\": ?-?[0-9e.]{0,25}, ?\"hashes\": ?\\[(\"[0-9a-fA-Fz]{0,66}\",?){0,3}\\]\\}"
            .prop_map(String::into_bytes),
    ]) {
        let _ = serde_json::from_slice::<HashmapPut>(body.as_ref());
    }

    #[test]
    fn hashmaps_round_trip(bytes in any::<u64>(), hashes in prop::collection::vec(any::<[u8; 32]>(), 0..50)) {
        let h = HashmapPut { bytes, hashes: hashes.into_iter().map(BlockHash).collect() };
        let json = serde_json::to_vec(&h).unwrap();
        prop_assert_eq!(serde_json::from_slice::<HashmapPut>(&json).unwrap(), h);
    }

    #[test]
    fn metafiles_never_panic(body in prop_oneof![
        any::<Vec<u8>>(),
        "\\{(\"(name|disk-format|is_public|properties|OSFAMILY|x)\": ?(\"[ -~]{0,10}\"|[0-9]{1,3}|true|null|\\{\\}|\\[\\]),?){0,5}\\}"
            .prop_map(String::into_bytes),
    ]) {
        let _ = metafile::parse(&body);
    }

    #[test]
    fn rendered_metafiles_parse_back(
        name in "[A-Za-z0-9._-][A-Za-z0-9 ._-]{0,29}",
        disk in prop::sample::select(DISK_FORMATS.to_vec()),
        container in prop::sample::select(CONTAINER_FORMATS.to_vec()),
        public in any::<bool>(),
        props in prop::collection::btree_map("[a-z][a-z0-9_]{0,10}", "[ -~]{0,20}", 0..6),
    ) {
        let img = Image {
            name: name.clone(),
            disk_format: disk.to_string(),
            container_format: container.to_string(),
            is_public: public,
            properties: props.clone(),
            ..Image::default()
        };
        let text = metafile::render(&img);
        let reg = metafile::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        prop_assert_eq!(reg.name.as_deref(), Some(name.trim()));
        prop_assert_eq!(reg.disk_format.as_deref(), Some(disk));
        prop_assert_eq!(reg.container_format.as_deref(), Some(container));
        prop_assert_eq!(reg.is_public, public);
        let want: BTreeMap<String, String> = props.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let got: BTreeMap<String, String> = reg.properties.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        prop_assert_eq!(got, want);
    }
}
