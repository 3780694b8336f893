//! A bounded load on an imgfs serve (scripts/bench-load.sh runs it): USERS users × CONNS
//! connections each sending REQUESTS mixed requests in all — object PUTs, GETs (checked
//! against what was acknowledged), ranged GETs, HEADs, listings, server-side copies, and bad
//! ones (another user's private object, a wrong token, a malformed hashmap, a bad range) —
//! while SLOW clients dribble their headers. Prints one JSON line: requests/s, p50/p99
//! latency, 5xx, unexpected answers, and acknowledged writes that did not read back.
//!
//! usage: loadgen URL TOKENS_FILE [CONNS] [REQUESTS] [SLOW]
//! (TOKENS_FILE: the JSON lines `imgfs user add` printed, one per user)

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct User {
    uuid: String,
    token: String,
}

/// What one user was told is stored: (name, sha256).
type Acked = Mutex<Vec<(String, String)>>;

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    server_errors: u64,
    unexpected: Vec<String>,
    lost: u64,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn body(i: u64) -> Vec<u8> {
    let len = 1024 + (i * 7919 % (64 * 1024)) as usize;
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: loadgen URL TOKENS_FILE [CONNS] [REQUESTS] [SLOW]");
        std::process::exit(2);
    }
    let url = args[1].trim_end_matches('/').to_string();
    let users: Vec<User> = std::fs::read_to_string(&args[2])
        .expect("tokens file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
            User {
                uuid: v["uuid"].as_str().unwrap().into(),
                token: v["token"].as_str().unwrap().into(),
            }
        })
        .collect();
    let conns: usize = args.get(3).map_or(50, |s| s.parse().unwrap());
    let total: u64 = args.get(4).map_or(50_000, |s| s.parse().unwrap());
    let slow: usize = args.get(5).map_or(300, |s| s.parse().unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Slow clients: a header byte every 5 s, for as long as the load runs.
    let addr = url.trim_start_matches("http://").to_string();
    let slow_tasks: Vec<_> = (0..slow)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let Ok(mut s) = tokio::net::TcpStream::connect(&addr).await else {
                    return;
                };
                for b in b"GET /identity/v2.0/tokens HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
                    if s.write_all(&[*b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            })
        })
        .collect();

    let acked: Arc<Vec<Acked>> = Arc::new((0..users.len()).map(|_| Mutex::new(Vec::new())).collect());
    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let mut tasks = vec![];
    for (ui, user) in users.iter().enumerate() {
        for _ in 0..conns {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            let (user, users, url, next, tally, acked) = (
                user.clone(),
                users.clone(),
                url.clone(),
                next.clone(),
                tally.clone(),
                acked.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut mine = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let base = format!("{url}/object-store/v1/{}", user.uuid);
                    let pick = |i: u64| -> Option<(String, String)> {
                        let m = acked[ui].lock().unwrap();
                        if m.is_empty() {
                            return None;
                        }
                        Some(m[(i as usize * 31) % m.len()].clone())
                    };
                    let t = Instant::now();
                    // (kind, request, statuses expected)
                    let (kind, rq, ok): (&str, reqwest::RequestBuilder, &[u16]) = match i % 20 {
                        0..=5 => {
                            let name = format!("load/{ui}/{i}");
                            let data = body(i);
                            let sum = hex(&Sha256::digest(&data));
                            let r = http
                                .put(format!("{base}/pithos/{name}"))
                                .header("X-Auth-Token", &user.token)
                                .header("Content-Type", "application/octet-stream")
                                .body(data)
                                .send()
                                .await;
                            mine.latencies_us.push(t.elapsed().as_micros() as u32);
                            match r {
                                Ok(r) if r.status() == 201 => {
                                    acked[ui].lock().unwrap().push((name, sum));
                                }
                                Ok(r) if r.status().is_server_error() => mine.server_errors += 1,
                                Ok(r) => mine.unexpected.push(format!("put {}", r.status())),
                                Err(e) => mine.unexpected.push(format!("put: {e}")),
                            }
                            continue;
                        }
                        6..=10 => {
                            let Some((name, sum)) = pick(i) else { continue };
                            let r = http
                                .get(format!("{base}/pithos/{name}"))
                                .header("X-Auth-Token", &user.token)
                                .send()
                                .await;
                            let got = match r {
                                Ok(r) if r.status() == 200 => r.bytes().await.ok(),
                                Ok(r) if r.status().is_server_error() => {
                                    mine.server_errors += 1;
                                    None
                                }
                                _ => None,
                            };
                            mine.latencies_us.push(t.elapsed().as_micros() as u32);
                            if got.is_none_or(|b| hex(&Sha256::digest(&b)) != sum) {
                                mine.lost += 1;
                            }
                            continue;
                        }
                        11 | 12 => {
                            let Some((name, _)) = pick(i) else { continue };
                            ("head", http.head(format!("{base}/pithos/{name}")), &[200])
                        }
                        13 | 14 => (
                            "list",
                            http.get(format!("{base}/pithos?prefix=load/{ui}/&limit=100&format=json")),
                            &[200, 204],
                        ),
                        15 => {
                            let Some((name, sum)) = pick(i) else { continue };
                            let dst = format!("load/{ui}/copy-{i}");
                            let r = http
                                .put(format!("{base}/pithos/{dst}"))
                                .header("X-Auth-Token", &user.token)
                                .header("X-Copy-From", format!("/pithos/{name}"))
                                .header("Content-Length", "0")
                                .send()
                                .await;
                            mine.latencies_us.push(t.elapsed().as_micros() as u32);
                            match r {
                                Ok(r) if r.status() == 201 => {
                                    acked[ui].lock().unwrap().push((dst, sum));
                                }
                                Ok(r) if r.status().is_server_error() => mine.server_errors += 1,
                                Ok(r) => mine.unexpected.push(format!("copy {}", r.status())),
                                Err(e) => mine.unexpected.push(format!("copy: {e}")),
                            }
                            continue;
                        }
                        16 => (
                            "bad hashmap",
                            http.put(format!("{base}/pithos/load/{ui}/bad-{i}?hashmap=True&format=json"))
                                .header("Content-Type", "application/octet-stream")
                                .body(r#"{"bytes": 5, "hashes": ["not-a-hash"]}"#),
                            &[400],
                        ),
                        17 => {
                            let other = &users[(ui + 1) % users.len()];
                            (
                                "another's",
                                http.get(format!(
                                    "{url}/object-store/v1/{}/pithos/load/{}/{}",
                                    other.uuid,
                                    (ui + 1) % users.len(),
                                    i - 17
                                )),
                                if other.uuid == user.uuid {
                                    &[200, 404]
                                } else {
                                    &[403, 404]
                                },
                            )
                        }
                        18 => {
                            let r = http
                                .get(format!("{base}/pithos"))
                                .header("X-Auth-Token", "not-a-token")
                                .send()
                                .await;
                            mine.latencies_us.push(t.elapsed().as_micros() as u32);
                            match r {
                                Ok(r) if r.status() == 401 => {}
                                Ok(r) if r.status().is_server_error() => mine.server_errors += 1,
                                Ok(r) => mine.unexpected.push(format!("bad token {}", r.status())),
                                Err(e) => mine.unexpected.push(format!("bad token: {e}")),
                            }
                            continue;
                        }
                        _ => {
                            let Some((name, _)) = pick(i) else { continue };
                            (
                                "ranges",
                                http.get(format!("{base}/pithos/{name}"))
                                    .header("Range", "bytes=0-9,100-199,-50"),
                                &[206],
                            )
                        }
                    };
                    let r = rq.header("X-Auth-Token", &user.token).send().await;
                    let status = match r {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            let _ = r.bytes().await;
                            Some(s)
                        }
                        Err(e) => {
                            mine.unexpected.push(format!("{kind}: {e}"));
                            None
                        }
                    };
                    mine.latencies_us.push(t.elapsed().as_micros() as u32);
                    if let Some(s) = status {
                        if s >= 500 {
                            mine.server_errors += 1;
                        } else if !ok.contains(&s) {
                            mine.unexpected.push(format!("{kind} {s}"));
                        }
                    }
                }
                let mut t = tally.lock().unwrap();
                t.latencies_us.extend(mine.latencies_us);
                t.server_errors += mine.server_errors;
                t.unexpected.extend(mine.unexpected);
                t.lost += mine.lost;
            }));
        }
    }
    for t in tasks {
        t.await.expect("a load task");
    }
    let elapsed = started.elapsed();
    for s in slow_tasks {
        s.abort();
    }
    // Every acknowledged write reads back whole, after the load.
    let http = reqwest::Client::new();
    let mut lost_after = 0u64;
    let mut checked = 0u64;
    for (ui, user) in users.iter().enumerate() {
        let all: Vec<(String, String)> = acked[ui].lock().unwrap().clone();
        for (name, sum) in all {
            checked += 1;
            let r = http
                .get(format!("{url}/object-store/v1/{}/pithos/{name}", user.uuid))
                .header("X-Auth-Token", &user.token)
                .send()
                .await;
            let ok = match r {
                Ok(r) if r.status() == 200 => r.bytes().await.is_ok_and(|b| hex(&Sha256::digest(&b)) == sum),
                _ => false,
            };
            if !ok {
                lost_after += 1;
            }
        }
    }
    let mut t = tally.lock().unwrap();
    t.latencies_us.sort_unstable();
    let q = |p: f64| {
        t.latencies_us
            .get(((t.latencies_us.len() as f64 * p) as usize).min(t.latencies_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let mut kinds: HashMap<String, u64> = HashMap::new();
    for u in &t.unexpected {
        *kinds.entry(u.clone()).or_default() += 1;
    }
    println!(
        "{}",
        serde_json::json!({
            "requests": t.latencies_us.len(),
            "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
            "requests_per_s": (t.latencies_us.len() as f64 / elapsed.as_secs_f64()).round(),
            "p50_ms": q(0.50), "p99_ms": q(0.99), "max_ms": q(1.0),
            "server_errors": t.server_errors,
            "unexpected": kinds,
            "reads_not_matching": t.lost,
            "acknowledged_writes_checked": checked,
            "acknowledged_writes_lost": lost_after,
            "slow_clients": slow,
        })
    );
}
