//! Test harness: a real `imgfs serve` on an ephemeral port with a temporary data directory,
//! users created through `imgfs user add`, and a small blocking HTTP client.
#![allow(dead_code)]

mod cloud;
pub mod lazyfs;
pub mod tamper;
#[allow(unused_imports)]
pub use cloud::*;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_imgfs");

pub struct Server {
    child: Option<Child>,
    /// With `IMGFS_TEST_SERVERS=N`: the other N-1 servers over the same storage, and the
    /// HAProxy in front of all of them, whose address is `addr`.
    others: Vec<Child>,
    haproxy: Option<Child>,
    pub addr: String,
    pub data: PathBuf,
    /// Its storage is the data directory whole (`IMGFS_BLOCKS=` given), whatever the tier.
    files: bool,
    /// Its storage as the test named it (`--meta URL --blocks URL` among its arguments).
    named: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub uuid: String,
    pub name: String,
    pub token: String,
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("imgfs-test-")
            .tempdir_in(test_root())
            .unwrap();
        let data = tmp.path().join("data");
        let mut s = Server::start_on(&data);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server on an existing (or new) data directory.
    pub fn start_on(data: &Path) -> Server {
        Server::start_at(data, "127.0.0.1:0")
    }

    /// Starts a server on a data directory and a given address (to come back where a client
    /// expects it after a crash).
    pub fn start_at(data: &Path, listen: &str) -> Server {
        Server::start_with(data, listen, &[])
    }

    /// A fresh server started with extra `imgfs serve` arguments.
    pub fn start_args(args: &[&str]) -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("imgfs-test-")
            .tempdir_in(test_root())
            .unwrap();
        let mut s = Server::start_with(&tmp.path().join("data"), "127.0.0.1:0", args);
        s._tmp = Some(tmp);
        s
    }

    /// A server on an existing (or new) data directory, with extra `imgfs serve` arguments.
    pub fn start_on_with(data: &Path, args: &[&str]) -> Server {
        Server::start_with(data, "127.0.0.1:0", args)
    }

    fn start_with(data: &Path, listen: &str, args: &[&str]) -> Server {
        Server::start_env(data, listen, args, &[])
    }

    /// A server on a data directory with extra arguments and environment variables; with
    /// `IMGFS_TEST_SERVERS=N` (N > 1), N servers over the same storage behind HAProxy
    /// (round-robin), which listens at `listen`.
    pub fn start_env(data: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let n = std::env::var("IMGFS_TEST_SERVERS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        if n > 1 {
            return Server::start_many(n, data, listen, args, env);
        }
        Server::start_single(data, listen, args, env)
    }

    /// One server, whatever `IMGFS_TEST_SERVERS` says (a test that sets up servers of its own).
    pub fn start_single(data: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let (child, addr) = spawn_server(data, listen, args, env);
        Server {
            child: Some(child),
            others: vec![],
            haproxy: None,
            addr,
            data: data.to_path_buf(),
            files: files_only(env),
            named: named_storage(args),
            _tmp: None,
        }
    }

    /// `n` servers over one data directory's storage, behind HAProxy at `listen`.
    pub fn start_many(n: usize, data: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut backends: Vec<(Child, String)> = (0..n).map(|_| spawn_server(data, "127.0.0.1:0", args, env)).collect();
        let addrs: Vec<String> = backends.iter().map(|(_, a)| a.clone()).collect();
        let (haproxy, addr) = start_haproxy(data, listen, &addrs);
        let (first, _) = backends.remove(0);
        Server {
            child: Some(first),
            others: backends.into_iter().map(|(c, _)| c).collect(),
            haproxy: Some(haproxy),
            addr,
            data: data.to_path_buf(),
            files: files_only(env),
            named: named_storage(args),
            _tmp: None,
        }
    }

    /// The servers' own addresses behind the balancer (just `addr` for a single server).
    pub fn backends(&self) -> Vec<String> {
        let cfg = std::fs::read_to_string(self.data.with_extension("haproxy.cfg")).unwrap_or_default();
        let v: Vec<String> = cfg
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
            .collect();
        if self.haproxy.is_some() && !v.is_empty() {
            v
        } else {
            vec![self.addr.clone()]
        }
    }

    /// SIGKILL to one server behind the balancer (0: the first).
    pub fn kill9_one(&mut self, i: usize) {
        let c = if i == 0 {
            self.child.as_mut()
        } else {
            self.others.get_mut(i - 1)
        };
        if let Some(c) = c {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn add_user(&self, name: &str) -> TestUser {
        let out = self
            .imgfs()
            .args(["user", "add", name])
            .storage_of(self)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
        TestUser {
            uuid: v["uuid"].as_str().unwrap().into(),
            name: v["name"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
        }
    }

    /// SIGKILL, as a crash would (every server, and the balancer).
    pub fn kill9(&mut self) {
        let all = self
            .child
            .take()
            .into_iter()
            .chain(self.others.drain(..))
            .chain(self.haproxy.take());
        for mut c in all {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `imgfs` command for this server's storage (give it [`StorageArgs::storage_of`]).
    pub fn imgfs(&self) -> Command {
        if self.files {
            imgfs_files()
        } else {
            imgfs(&self.data)
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `IMGFS_BLOCKS=` in a server's environment: its metadata and blocks in the data directory,
/// whatever the tier.
fn files_only(env: &[(&str, &str)]) -> bool {
    env.iter().any(|(k, v)| *k == "IMGFS_BLOCKS" && v.is_empty())
}

/// The storage options among a server's arguments, if the test names its storage itself.
fn named_storage(args: &[&str]) -> Vec<String> {
    let mut out = vec![];
    for w in args.windows(2) {
        if w[0] == "--meta" || w[0] == "--blocks" {
            out.extend([w[0].to_string(), w[1].to_string()]);
        }
    }
    out
}

/// One `imgfs serve` on a data directory's storage (the tier's, unless `args` name it); its
/// child and address.
fn spawn_server(data: &Path, listen: &str, args: &[&str], env: &[(&str, &str)]) -> (Child, String) {
    std::fs::create_dir_all(data).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .unwrap();
    let files = files_only(env);
    let mut cmd = if files { imgfs_files() } else { imgfs(data) };
    cmd.args(["serve", "--listen", listen]);
    if files {
        cmd.arg("--data").arg(data);
    } else if named_storage(args).is_empty() {
        cmd.storage(data);
    }
    let mut child = cmd
        .args(args)
        .envs(env.iter().copied().filter(|(k, _)| *k != "IMGFS_BLOCKS" || !files))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("start imgfs serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("server said {line:?}"))
        .to_string();
    (child, addr)
}

/// HAProxy (`IMGFS_HAPROXY`, else `haproxy` on PATH), round-robin over `backends`, at
/// `listen` (port 0: a free one), once it answers `/healthz`. A request whose connection to a
/// server fails goes to another (`retry-on conn-failure`, `redispatch`); servers are checked
/// every second (`GET /healthz`).
pub fn start_haproxy(data: &Path, listen: &str, backends: &[String]) -> (Child, String) {
    let addr = if listen.ends_with(":0") {
        let l = std::net::TcpListener::bind(listen).unwrap();
        l.local_addr().unwrap().to_string()
    } else {
        listen.to_string()
    };
    let mut cfg: Vec<String> = [
        "global",
        "    maxconn 4096",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 600s",
        "    timeout server 600s",
        "    timeout http-request 30s",
        "    retries 3",
        "    option redispatch",
        "    retry-on conn-failure",
        "frontend imgfs",
    ]
    .map(String::from)
    .to_vec();
    cfg.push(format!("    bind {addr}"));
    cfg.extend(
        [
            "    default_backend servers",
            "backend servers",
            "    balance roundrobin",
        ]
        .map(String::from),
    );
    cfg.push("    option httpchk GET /healthz".into());
    for (i, b) in backends.iter().enumerate() {
        cfg.push(format!("    server s{i} {b} check inter 1s fall 2 rise 1"));
    }
    let cfg = cfg.join("\n") + "\n";
    let path = data.with_extension("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let bin = std::env::var("IMGFS_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("haproxy.log"))
        .unwrap();
    let mut child = Command::new(&bin)
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e} (scripts/test.sh installs haproxy)"));
    let url = format!("http://{addr}/healthz");
    let c = http();
    for _ in 0..200 {
        if c.get(&url).send().is_ok_and(|r| r.status() == 200) {
            return (child, addr);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "HAProxy at {addr} did not answer (its log: {})",
        data.with_extension("haproxy.log").display()
    );
}

/// The `imgfs` command for the engine of a data directory: with `IMGFS_TEST_S3=s3://BUCKET`
/// (scripts/test.sh's `imgfs-s3` tier, over Swift's s3api, the `AWS_*` variables set), its
/// blocks are in that bucket under a prefix of the data directory's own (`IMGFS_BLOCKS`), not
/// in the directory; else the command is plain `imgfs`.
pub fn imgfs(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    if let Some(url) = s3_blocks(data) {
        c.env("IMGFS_BLOCKS", url);
    }
    c
}

/// The `imgfs` command for a data directory that keeps its blocks and its metadata in it,
/// whatever the tier (the source of a migration; give it `--data`).
pub fn imgfs_files() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("IMGFS_BLOCKS");
    c
}

/// The options naming a data directory's storage, after a subcommand: `--data DIR`, or in the
/// PostgreSQL tier `--meta URL` (the directory's own schema: [`pg_meta`]) with its blocks in
/// the directory, or in S3 if that tier's bucket is set too (`IMGFS_BLOCKS`, from [`imgfs`]).
pub trait StorageArgs {
    fn storage(&mut self, data: &Path) -> &mut Self;
    /// The options naming a server's storage (its data directory whole if it was started so).
    fn storage_of(&mut self, s: &Server) -> &mut Self;
}

impl StorageArgs for Command {
    fn storage_of(&mut self, s: &Server) -> &mut Self {
        if !s.named.is_empty() {
            self.args(&s.named)
        } else if s.files {
            self.arg("--data").arg(&s.data)
        } else {
            self.storage(&s.data)
        }
    }

    fn storage(&mut self, data: &Path) -> &mut Self {
        match pg_meta(data) {
            Some(url) => {
                self.arg("--meta").arg(url);
                if s3_blocks(data).is_none() {
                    self.arg("--blocks")
                        .arg(format!("dir:{}", data.join("blocks").display()));
                }
            }
            None => {
                self.arg("--data").arg(data);
            }
        }
        self
    }
}

/// The PostgreSQL metadata of a data directory in the PostgreSQL tier (`IMGFS_TEST_PG`, a
/// server URL; `None` elsewhere): a schema named by the directory's path, made by the first
/// imgfs that opens it, so a restarted or second server finds it.
pub fn pg_meta(data: &Path) -> Option<String> {
    let url = std::env::var("IMGFS_TEST_PG").ok().filter(|u| !u.is_empty())?;
    let id = &sha256_hex(data.as_os_str().as_encoded_bytes())[..16];
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-c%20search_path%3Dt{id}"))
}

/// Metadata in PostgreSQL (the tier), not in the data directory's `meta.db`.
pub fn meta_in_pg() -> bool {
    std::env::var("IMGFS_TEST_PG").is_ok_and(|u| !u.is_empty())
}

/// The S3 block store of a data directory in the S3 tier (`None` elsewhere): a prefix named
/// by the directory's path, so that a server started again on it, or a second one over it,
/// finds its blocks (kept in no file: a power-cut test loses what was not fsynced).
pub fn s3_blocks(data: &Path) -> Option<String> {
    let bucket = std::env::var("IMGFS_TEST_S3").ok()?;
    let id = &sha256_hex(data.as_os_str().as_encoded_bytes())[..16];
    Some(format!("{}/t{id}", bucket.trim_end_matches('/')))
}

/// Bytes and number of the blocks a data directory's engine stores: its block files, or in
/// the S3 tier its objects, listed through Swift's own API (the bucket is a Swift container;
/// `IMGFS_TEST_SWIFT_AUTH` is the v1 auth URL, user `test:tester`) — a witness that is not
/// the S3 client imgfs uses. The owner mark and temp files of writes in flight are not blocks.
pub fn stored_blocks(data: &Path) -> (u64, usize) {
    fn walk(p: &Path, out: &mut (u64, usize)) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy();
            if p.is_dir() {
                walk(&p, out);
            } else if name != ".imgfs-owner" && !name.starts_with(".tmp-") {
                // (a file may go between the listing and its stat: a temp file renamed)
                if let Ok(m) = p.metadata() {
                    out.0 += m.len();
                    out.1 += 1;
                }
            }
        }
    }
    let mut out = (0, 0);
    match s3_blocks(data) {
        None => walk(&data.join("blocks"), &mut out),
        Some(url) => {
            for (name, bytes) in s3_objects(&url) {
                if !name.ends_with("/.imgfs-owner") {
                    out.0 += bytes;
                    out.1 += 1;
                }
            }
        }
    }
    out
}

/// `(token, storage URL)` of Swift's `test:tester` (`IMGFS_TEST_SWIFT_AUTH`: the v1 auth URL
/// of the S3 tier's Swift), whose containers are the S3 buckets.
pub fn swift_session() -> (String, String) {
    let auth = std::env::var("IMGFS_TEST_SWIFT_AUTH").expect("IMGFS_TEST_SWIFT_AUTH (set by scripts/test.sh)");
    let r = http()
        .get(&auth)
        .header("X-Auth-User", "test:tester")
        .header("X-Auth-Key", "testing")
        .send()
        .unwrap();
    assert!(r.status().is_success(), "Swift auth: {}", r.status());
    let header = |n: &str| r.headers()[n].to_str().unwrap().to_string();
    (header("x-auth-token"), header("x-storage-url"))
}

/// `(name, bytes)` of every object under an `s3://BUCKET/PREFIX`, through Swift's API.
pub fn s3_objects(url: &str) -> Vec<(String, u64)> {
    let (bucket, prefix) = url.trim_start_matches("s3://").split_once('/').unwrap();
    let c = http();
    let (token, storage) = swift_session();
    let mut out = vec![];
    loop {
        let marker = out.last().map(|(n, _): &(String, u64)| n.clone()).unwrap_or_default();
        let page: serde_json::Value = c
            .get(format!("{storage}/{bucket}"))
            .query(&[
                ("prefix", format!("{prefix}/")),
                ("marker", marker),
                ("format", "json".into()),
            ])
            .header("X-Auth-Token", &token)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let page = page.as_array().unwrap();
        if page.is_empty() {
            return out;
        }
        for o in page {
            out.push((o["name"].as_str().unwrap().to_string(), o["bytes"].as_u64().unwrap()));
        }
    }
}

/// Whether this run's servers keep their blocks in S3 (tests that look at block files skip).
pub fn blocks_in_s3() -> bool {
    std::env::var_os("IMGFS_TEST_S3").is_some()
}

/// A cloud at a host:port (one server of several, a proxy before one).
pub struct At(pub String);

impl Endpoints for At {
    fn identity_url(&self) -> String {
        format!("http://{}/identity/v2.0", self.0)
    }
    fn pithos_url(&self) -> String {
        format!("http://{}/object-store/v1", self.0)
    }
    fn image_url(&self) -> String {
        format!("http://{}/image/v1.0", self.0)
    }
}

/// Where test data goes: the target dir (not /tmp, which may be small or tmpfs).
pub fn test_root() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Where a cloud's three services are: what its identity catalog says.
pub trait Endpoints {
    /// `…/identity/v2.0`: what a mount or kamaki is given.
    fn identity_url(&self) -> String;
    /// `…/object-store/v1` (no account).
    fn pithos_url(&self) -> String;
    /// `…/image/v1.0`.
    fn image_url(&self) -> String;
    /// Whether concurrent writes may fail with a 500 that a retry cures (the original's
    /// SQLite metadata, in this test deployment: "database is locked").
    fn writes_may_be_busy(&self) -> bool {
        false
    }
}

impl Endpoints for Server {
    fn identity_url(&self) -> String {
        format!("{}/identity/v2.0", self.url())
    }
    fn pithos_url(&self) -> String {
        format!("{}/object-store/v1", self.url())
    }
    fn image_url(&self) -> String {
        format!("{}/image/v1.0", self.url())
    }
}

/// A client acting as one user.
pub struct Api {
    pub http: Client,
    /// The object store's root (`…/object-store/v1`).
    pub pithos: String,
    /// The image registry's root (`…/image/v1.0`).
    pub image: String,
    pub user: TestUser,
    /// Retry [`Api::put`] on a 500 (see [`Endpoints::writes_may_be_busy`]).
    pub retry_busy: bool,
}

impl Api {
    pub fn new(cloud: &impl Endpoints, user: &TestUser) -> Api {
        Api {
            http: http(),
            pithos: cloud.pithos_url(),
            image: cloud.image_url(),
            user: user.clone(),
            retry_busy: cloud.writes_may_be_busy(),
        }
    }

    /// `path` relative to the object store account URL: "" = account, "c" = container, "c/o" = object.
    pub fn os(&self, method: &str, path: &str) -> RequestBuilder {
        let url = if path.is_empty() {
            format!("{}/{}", self.pithos, self.user.uuid)
        } else {
            format!("{}/{}/{}", self.pithos, self.user.uuid, path)
        };
        self.raw(method, &url)
    }

    /// Another account's path.
    pub fn os_of(&self, account: &str, method: &str, path: &str) -> RequestBuilder {
        self.raw(method, &format!("{}/{}/{}", self.pithos, account, path))
    }

    pub fn img(&self, method: &str, path: &str) -> RequestBuilder {
        self.raw(method, &format!("{}/{}", self.image, path))
    }

    pub fn raw(&self, method: &str, url: &str) -> RequestBuilder {
        self.http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), url)
            .header("X-Auth-Token", &self.user.token)
    }

    pub fn put(&self, path: &str, data: &[u8]) -> Response {
        let r = self.try_put(path, data);
        assert_eq!(r.status(), 201, "PUT {path}: {}", r.text().unwrap_or_default());
        r
    }

    /// [`Api::put`] without the check of its status (still retried where writes may be busy).
    pub fn try_put(&self, path: &str, data: &[u8]) -> Response {
        let mut pause = Duration::from_millis(20);
        loop {
            // (the original refuses a PUT without a type: 411)
            let r = self
                .os("PUT", path)
                .header("Content-Type", "application/octet-stream")
                .body(data.to_vec())
                .send()
                .unwrap();
            if !(self.retry_busy && r.status() == 500 && pause < Duration::from_secs(5)) {
                return r;
            }
            std::thread::sleep(pause);
            pause *= 2;
        }
    }

    pub fn get(&self, path: &str) -> Vec<u8> {
        let r = self.os("GET", path).send().unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.bytes().unwrap().to_vec()
    }

    pub fn head(&self, path: &str) -> Response {
        self.os("HEAD", path).send().unwrap()
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = self.os("GET", &format!("{path}{sep}format=json")).send().unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().unwrap()
    }
}

/// A blocking HTTP client (reqwest's rustls backend needs its crypto provider chosen).
pub fn http() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(Duration::from_secs(300))
        .pool_idle_timeout(Duration::from_secs(15))
        .build()
        .unwrap()
}

pub fn header(r: &Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A seed for [`pattern`] that no earlier run used (the original Synnefo keeps its blocks
/// from run to run and deduplicates them across accounts).
pub fn unique_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A short tag for names that must not meet those of other tests or earlier runs on a shared
/// server (image names, e-mail addresses).
pub fn run_tag() -> String {
    format!("t{:05x}", (unique_seed() >> 8) & 0xfffff)
}

/// One block sent by kamaki's way (`POST ?update` of its bytes).
pub fn upload_block(api: &Api, data: &[u8]) -> Response {
    api.os("POST", "pithos?update&format=json")
        .header("Content-Type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap()
}

/// kamaki's way: PUT the hashmap, send what the 409 names (through `blocks`), PUT again.
pub fn put_by_hashmap(api: &Api, blocks: &Api, name: &str, data: &[u8], retries: &std::sync::atomic::AtomicU64) {
    const BLOCK: usize = 4 << 20;
    let hashes: Vec<String> = data
        .chunks(BLOCK)
        .map(|b| {
            let end = b.iter().rposition(|&x| x != 0).map_or(0, |i| i + 1);
            sha256_hex(&b[..end])
        })
        .collect();
    let map = serde_json::json!({"bytes": data.len(), "hashes": hashes}).to_string();
    // (with no grace period and collectors running back to back, a collection between the
    // blocks and the hashmap is the common case: seen 50 times in a row once in CI)
    for attempt in 0..200 {
        let r = api
            .os("PUT", &format!("{name}?hashmap=True&format=json"))
            .header("Content-Type", "application/octet-stream")
            .body(map.clone())
            .send()
            .unwrap();
        match r.status().as_u16() {
            201 => return,
            409 => {
                if attempt > 0 {
                    retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                let missing: Vec<String> = r.json().unwrap();
                for m in missing {
                    let i = hashes.iter().position(|h| *h == m).expect("a hash of ours");
                    let block = &data[i * BLOCK..((i + 1) * BLOCK).min(data.len())];
                    let r = upload_block(blocks, block);
                    assert_eq!(r.status(), 202, "{}", r.text().unwrap_or_default());
                }
            }
            s => panic!("PUT {name}: {s} {}", r.text().unwrap_or_default()),
        }
    }
    panic!("PUT {name}: blocks collected 200 times in a row");
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A real mount of a user's account (`imgfs mount`, daemonized), unmounted on drop.
pub struct Mount {
    pub dir: PathBuf,
    pub log: PathBuf,
    /// Removed (after the unmount in Drop) with everything a test left beside the mount.
    _root: tempfile::TempDir,
}

impl Mount {
    pub fn new(cloud: &impl Endpoints, user: &TestUser, extra: &str) -> Mount {
        let tmp = tempfile::Builder::new().prefix("mnt-").tempdir_in(test_root()).unwrap();
        let root = tmp.path().to_path_buf();
        let dir = root.join("m");
        std::fs::create_dir_all(&dir).unwrap();
        let token = root.join("token");
        std::fs::write(&token, &user.token).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let log = root.join("mount.log");
        let mut opts = format!("token_file={},log_file={}", token.display(), log.display());
        if !extra.is_empty() {
            opts.push(',');
            opts.push_str(extra);
        }
        let out = Command::new(BIN)
            .args(["mount", &cloud.identity_url()])
            .arg(&dir)
            .args(["-o", &opts])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount { dir, log, _root: tmp }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    pub fn unmount(&self) {
        let out = Command::new("fusermount3").arg("-u").arg(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "unmount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("fusermount3").arg("-uz").arg(&self.dir).output();
    }
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").args(["-c", cmd]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// After a `cp` of 1 GiB (sha256 `want`) to `dst` on a mount, object `path`, that something
/// went wrong under: it completed and the object is whole (by the API and through the
/// mount), or it failed with EIO and the object is absent or whole — never torn.
pub fn whole_or_absent(api: &Api, path: &str, out: &std::process::Output, want: &str, dst: &Path) -> &'static str {
    let r = api.head(path);
    if out.status.success() {
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), (1u64 << 30).to_string());
        assert_eq!(sha256_hex(&api.get(path)), want, "the copy is whole");
        assert_eq!(sha_file(dst), want, "and reads back whole through the mount");
        "completed"
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Input/output error"), "{err}");
        match r.status().as_u16() {
            404 => {}
            200 => assert_eq!(sha256_hex(&api.get(path)), want, "never torn"),
            other => panic!("after a failed copy: {other}"),
        }
        "failed (EIO)"
    }
}

pub fn sha_file(p: &Path) -> String {
    sha256_hex(&std::fs::read(p).unwrap())
}

/// kamaki 0.16 (installed by scripts/test.sh) configured for one user of a server, with its
/// own HOME.
pub struct Kamaki {
    home: tempfile::TempDir,
    py: String,
    dir: String,
}

impl Kamaki {
    pub fn new(cloud: &impl Endpoints, user: &TestUser) -> Kamaki {
        let dir = std::env::var("IMGFS_KAMAKI")
            .expect("IMGFS_KAMAKI is not set: run the tests through scripts/test.sh, which installs kamaki 0.16");
        let py = std::env::var("IMGFS_PY27").expect("IMGFS_PY27 is not set: run the tests through scripts/test.sh");
        let k = Kamaki {
            home: tempfile::tempdir_in(test_root()).unwrap(),
            py,
            dir,
        };
        k.ok(&["config", "set", "cloud.imgfs.url", &cloud.identity_url()]);
        k.ok(&["config", "set", "cloud.imgfs.token", &user.token]);
        k.ok(&["config", "set", "default_cloud", "imgfs"]);
        k
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.py)
            .arg(format!("{}/bin/kamaki", self.dir))
            .args(args)
            .env("HOME", self.home.path())
            .env("PYTHONPATH", &self.dir)
            .current_dir(self.home.path())
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "kamaki {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Runs a command that must fail; returns everything it printed.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(!o.status.success(), "kamaki {args:?} should have failed");
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.home.path().join(name)
    }
}

/// Writes a file and closes it, returning close's own result (std's drop ignores it): a
/// commit's error (a bad metafile's EINVAL) arrives at close.
pub fn write_close(p: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(p)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: fd was just taken from the File, so it is open and owned here.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One extended attribute's value, by `getfattr`.
pub fn getfattr(p: &Path, name: &str) -> String {
    sh(&format!("getfattr --only-values -n {name} '{}'", p.display()))
}
