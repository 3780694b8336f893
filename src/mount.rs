//! `imgfs mount SOURCE MOUNTPOINT [-o OPTS] [-f]` and its `mount.imgfs` form (what
//! `mount -t imgfs` and fstab run): option parsing, the token's sources, daemonizing once the
//! mount is live, and a clean unmount on SIGTERM/SIGINT.

use crate::api::hashing::BLOCK_SIZE;
use crate::client::pithos::{http_client, PithosClient};
use crate::client::session::{authenticate, read_token_file, resolve_source, TokenCell};
use crate::client::tls::Roots;
use crate::client::Storage;
use crate::fs::{Fs, FsOptions};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("unknown mount option {0:?}")]
    UnknownOption(String),
    #[error("bad value for mount option {0}: {1:?}")]
    BadValue(&'static str, String),
    #[error(transparent)]
    Session(#[from] crate::client::session::SessionError),
    #[error(transparent)]
    Fuse(#[from] crate::fs::fuse::SessionError),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, Clone, Default)]
pub struct MountArgs {
    pub source: String,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub options: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct MountConfig {
    pub source: String,
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub token_file: Option<String>,
    /// A private CA's certificates (PEM), trusted beside the system's.
    pub ca_file: Option<PathBuf>,
    pub allow_other: bool,
    pub log_file: Option<PathBuf>,
    /// How long a request waits for the server's next bytes before that attempt fails.
    pub io_timeout: Duration,
    /// `verify_reads` as given; without it, [`verify_by_default`] decides.
    pub verify_reads: Option<bool>,
    pub fs: FsOptions,
}

/// Options mount(8) and fstab pass along that mean nothing to imgfs.
fn ignored(o: &str) -> bool {
    matches!(
        o,
        "rw" | "_netdev"
            | "nofail"
            | "defaults"
            | "auto"
            | "noauto"
            | "user"
            | "nouser"
            | "users"
            | "dev"
            | "nodev"
            | "suid"
            | "nosuid"
            | "exec"
            | "noexec"
            | "atime"
            | "noatime"
            | "relatime"
    ) || o.starts_with("x-")
        || o.starts_with("comment=")
}

/// Whether blocks read are checked against their hash when the options do not say: where
/// someone between the mount and the server could change them unseen, that is over plain
/// http to another machine. Over https the bytes cannot be changed on the way, and on
/// loopback there is no way; `imgfs serve` checks what it reads from its disk either way. The
/// check costs a sha256 pass per block (about a fifth of read throughput on two cores).
pub fn verify_by_default(object_store: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(object_store) else {
        return true;
    };
    if url.scheme() != "http" {
        return false;
    }
    let host = url
        .host_str()
        .unwrap_or("")
        .trim_start_matches('[')
        .trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => !ip.is_loopback(),
        Err(_) => !host.eq_ignore_ascii_case("localhost"),
    }
}

pub fn parse_options(args: &MountArgs) -> Result<MountConfig, MountError> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut c = MountConfig {
        source: args.source.clone(),
        mountpoint: args.mountpoint.clone(),
        foreground: args.foreground,
        token_file: None,
        ca_file: None,
        allow_other: false,
        log_file: None,
        io_timeout: crate::client::pithos::IO_TIMEOUT,
        verify_reads: None,
        fs: FsOptions {
            uid,
            gid,
            ..FsOptions::default()
        },
    };
    for opt in args
        .options
        .iter()
        .flat_map(|o| o.split(','))
        .map(str::trim)
        .filter(|o| !o.is_empty())
    {
        let (k, v) = opt.split_once('=').map_or((opt, None), |(k, v)| (k, Some(v)));
        let num = |name: &'static str| -> Result<u32, MountError> {
            v.and_then(|v| v.parse().ok())
                .ok_or_else(|| MountError::BadValue(name, v.unwrap_or("").into()))
        };
        let mode = |name: &'static str| -> Result<u16, MountError> {
            v.and_then(|v| u16::from_str_radix(v, 8).ok())
                .filter(|m| *m <= 0o7777)
                .ok_or_else(|| MountError::BadValue(name, v.unwrap_or("").into()))
        };
        match k {
            "ro" => c.fs.read_only = true,
            "uid" => c.fs.uid = num("uid")?,
            "gid" => c.fs.gid = num("gid")?,
            "file_mode" => c.fs.file_mode = mode("file_mode")?,
            "dir_mode" => c.fs.dir_mode = mode("dir_mode")?,
            "allow_other" => c.allow_other = true,
            "verify_reads" => {
                c.verify_reads = Some(match v {
                    None | Some("1") | Some("yes") => true,
                    Some("0") | Some("no") => false,
                    Some(other) => return Err(MountError::BadValue("verify_reads", other.into())),
                })
            }
            "cache_mb" => {
                let mb = num("cache_mb").and_then(|mb| match mb {
                    1..=1048576 => Ok(mb as usize),
                    _ => Err(MountError::BadValue("cache_mb", v.unwrap_or("").into())),
                })?;
                c.fs.cache_blocks = mb.div_ceil(BLOCK_SIZE >> 20);
            }
            "attr_timeout" => {
                let s: f64 = v
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| *s >= 0.0 && *s < 86400.0)
                    .ok_or_else(|| MountError::BadValue("attr_timeout", v.unwrap_or("").into()))?;
                c.fs.attr_ttl = Duration::from_secs_f64(s);
            }
            "io_timeout" => {
                let s: f64 = v
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| (0.1..=3600.0).contains(s))
                    .ok_or_else(|| MountError::BadValue("io_timeout", v.unwrap_or("").into()))?;
                c.io_timeout = Duration::from_secs_f64(s);
            }
            "container" => {
                c.fs.container = Some(
                    v.filter(|v| !v.is_empty() && !v.contains('/'))
                        .ok_or_else(|| MountError::BadValue("container", v.unwrap_or("").into()))?
                        .to_string(),
                )
            }
            "token_file" => {
                c.token_file = Some(
                    v.filter(|v| !v.is_empty())
                        .ok_or_else(|| MountError::BadValue("token_file", String::new()))?
                        .to_string(),
                )
            }
            "ca_file" => {
                c.ca_file = Some(PathBuf::from(
                    v.filter(|v| !v.is_empty())
                        .ok_or_else(|| MountError::BadValue("ca_file", String::new()))?,
                ))
            }
            "log_file" => {
                c.log_file = Some(PathBuf::from(
                    v.filter(|v| !v.is_empty())
                        .ok_or_else(|| MountError::BadValue("log_file", String::new()))?,
                ))
            }
            "staging_dir" => {
                c.fs.staging_dir = PathBuf::from(
                    v.filter(|v| !v.is_empty())
                        .ok_or_else(|| MountError::BadValue("staging_dir", String::new()))?,
                )
            }
            _ if ignored(opt) => {}
            _ => return Err(MountError::UnknownOption(opt.to_string())),
        }
    }
    Ok(c)
}

/// Parses the mount(8) helper form: `mount.imgfs SOURCE MOUNTPOINT [-s] [-f] [-n] [-v] [-o OPTS]`.
pub fn parse_helper_args(argv: &[String]) -> Result<MountArgs, MountError> {
    let mut a = MountArgs::default();
    let mut pos = vec![];
    let mut it = argv.iter().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "-o" => a.options.push(
                it.next()
                    .ok_or_else(|| MountError::Other("-o needs a value".into()))?
                    .clone(),
            ),
            "-f" => a.foreground = true,
            // sloppy, no-mtab, verbose: nothing to do
            "-s" | "-n" | "-v" => {}
            o if o.starts_with("-o") => a.options.push(o[2..].to_string()),
            o if o.starts_with('-') => return Err(MountError::Other(format!("unknown flag {o}"))),
            _ => pos.push(x.clone()),
        }
    }
    if pos.len() != 2 {
        return Err(MountError::Other(
            "usage: mount.imgfs SOURCE MOUNTPOINT [-s] [-f] [-n] [-v] [-o OPTIONS]".into(),
        ));
    }
    a.source = pos[0].clone();
    a.mountpoint = PathBuf::from(&pos[1]);
    Ok(a)
}

/// Where the token is read again after the server refused it (a rotation): the token file,
/// or kamaki's config; a token from the environment cannot change.
fn token_source(c: &MountConfig, home: &Path) -> Option<Box<dyn Fn() -> Option<String> + Send + Sync>> {
    if let Some(f) = &c.token_file {
        let f = f.clone();
        return Some(Box::new(move || read_token_file(&f).ok()));
    }
    if std::env::var("IMGFS_TOKEN").is_ok_and(|t| !t.trim().is_empty()) {
        return None;
    }
    let (source, rc) = (c.source.clone(), home.join(".kamakirc"));
    Some(Box::new(move || {
        resolve_source(&source, &rc).ok().and_then(|s| s.token)
    }))
}

fn token(c: &MountConfig, kamaki_token: Option<String>) -> Result<String, MountError> {
    if let Some(f) = &c.token_file {
        return Ok(read_token_file(f)?);
    }
    if let Ok(t) = std::env::var("IMGFS_TOKEN") {
        if !t.trim().is_empty() {
            return Ok(t.trim().to_string());
        }
    }
    kamaki_token.ok_or(MountError::Session(crate::client::session::SessionError::NoToken))
}

/// Mounts; returns once unmounted (foreground) or once the mount is live (daemon: the parent
/// returns, the child serves until unmounted).
pub fn run(args: MountArgs) -> Result<(), MountError> {
    let mut cfg = parse_options(&args)?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let source = resolve_source(&cfg.source, &home.join(".kamakirc"))?;
    let token = token(&cfg, source.token)?;
    let identity_url = source.identity_url;
    if cfg.ca_file.is_none() {
        cfg.ca_file = source.ca_certs.map(PathBuf::from);
    }
    // (read now, so that a bad CA file is reported here rather than by the daemon)
    let roots = Roots::load(cfg.ca_file.as_deref()).map_err(|e| MountError::Other(e.to_string()))?;
    if !cfg.mountpoint.is_dir() {
        return Err(MountError::Other(format!(
            "mount point {} is not a directory",
            cfg.mountpoint.display()
        )));
    }
    if is_mount_point(&cfg.mountpoint) {
        return Err(MountError::Other(format!(
            "{} is already a mount point (busy)",
            cfg.mountpoint.display()
        )));
    }
    if cfg.foreground {
        if let Some(log) = &cfg.log_file {
            redirect_stderr(log);
        }
        return serve(cfg, identity_url, token, roots, None);
    }
    let mut fds = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(MountError::Other(format!("pipe: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: no other threads exist yet (no runtime was started), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => Err(MountError::Other(format!("fork: {}", std::io::Error::last_os_error()))),
        0 => {
            // SAFETY: the child owns the write end; the read end is the parent's.
            unsafe { libc::close(fds[0]) };
            let ready = unsafe { OwnedFd::from_raw_fd(fds[1]) };
            unsafe { libc::setsid() };
            detach_stdio(cfg.log_file.as_deref());
            let code = match serve(cfg, identity_url, token, roots, Some(ready)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!("{e}");
                    1
                }
            };
            std::process::exit(code);
        }
        _child => {
            unsafe { libc::close(fds[1]) };
            let mut r = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
            let mut msg = String::new();
            let _ = r.read_to_string(&mut msg);
            match msg.strip_prefix("OK") {
                Some(_) => Ok(()),
                None if msg.is_empty() => Err(MountError::Other(
                    "the mount process died before the mount was live".into(),
                )),
                None => Err(MountError::Other(msg.trim_start_matches("ERR ").to_string())),
            }
        }
    }
}

/// Whether something is mounted at `p` (per /proc/self/mountinfo, field 5).
fn is_mount_point(p: &std::path::Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(p) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().filter_map(|l| l.split(' ').nth(4)).any(|mp| {
        // mountinfo escapes spaces and the like as octal (\040).
        let mp = mp.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\");
        std::path::Path::new(&mp) == canon
    })
}

/// Sends the log (stderr) to `path`, keeping stdout.
fn redirect_stderr(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        // SAFETY: dup2 onto fd 2; `f` stays open until the call returns.
        unsafe { libc::dup2(f.as_raw_fd(), 2) };
    }
}

fn detach_stdio(log: Option<&std::path::Path>) {
    let target = log.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok());
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ok();
    use std::os::fd::AsRawFd;
    // SAFETY: dup2 onto the standard descriptors of this (single-threaded) child.
    unsafe {
        if let Some(n) = &devnull {
            libc::dup2(n.as_raw_fd(), 0);
        }
        let out = target.as_ref().or(devnull.as_ref());
        if let Some(o) = out {
            libc::dup2(o.as_raw_fd(), 1);
            libc::dup2(o.as_raw_fd(), 2);
        }
    }
}

fn report(ready: &mut Option<OwnedFd>, msg: &str) {
    if let Some(fd) = ready.take() {
        let mut f = std::fs::File::from(fd);
        let _ = f.write_all(msg.as_bytes());
    }
}

fn serve(
    cfg: MountConfig,
    identity_url: String,
    token: String,
    roots: Roots,
    mut ready: Option<OwnedFd>,
) -> Result<(), MountError> {
    let res = serve_inner(cfg, identity_url, token, roots, &mut ready);
    if let Err(e) = &res {
        report(&mut ready, &format!("ERR {e}"));
    }
    res
}

fn serve_inner(
    cfg: MountConfig,
    identity_url: String,
    token: String,
    roots: Roots,
    ready: &mut Option<OwnedFd>,
) -> Result<(), MountError> {
    // Every thread that allocates gets its own glibc arena by default; block buffers churned
    // across hashing threads then keep RSS far above what is live. Two arenas suffice.
    // SAFETY: mallopt only tunes the allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
        .map_err(|e| MountError::Other(e.to_string()))?;
    let trusted = roots.origin.clone();
    let http = http_client(roots, cfg.io_timeout);
    let account = rt.block_on(authenticate(&http, &trusted, &identity_url, &token))?;
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    let cell = match token_source(&cfg, &home) {
        Some(reread) => TokenCell::rereadable(&token, reread),
        None => TokenCell::fixed(&token),
    };
    let storage = PithosClient::new(http, &account.object_store, &account.uuid, &token)
        .with_token(cell)
        .with_images(account.image.clone());
    if let Some(c) = &cfg.fs.container {
        let exists = rt
            .block_on(storage.container_exists(c))
            .map_err(|e| MountError::Other(e.to_string()))?;
        if !exists {
            return Err(MountError::Other(format!(
                "container {c} does not exist in account {}",
                account.uuid
            )));
        }
    }
    let mut opts = cfg.fs.clone();
    opts.verify_reads = cfg
        .verify_reads
        .unwrap_or_else(|| verify_by_default(&account.object_store));
    tracing::info!(account = %account.uuid, user = %account.user_name, mountpoint = %cfg.mountpoint.display(), verify_reads = opts.verify_reads, "mounting");
    let fs = Arc::new(Fs::new(storage, opts));
    let session = crate::fs::fuse::SessionOptions {
        source: cfg.source.clone(),
        read_only: cfg.fs.read_only,
        allow_other: cfg.allow_other,
        threads: 4,
    };
    let mountpoint = std::fs::canonicalize(&cfg.mountpoint).unwrap_or_else(|_| cfg.mountpoint.clone());
    let ended = crate::fs::fuse::serve(fs.clone(), rt.handle().clone(), &mountpoint, &session, || {
        report(ready, "OK");
        tracing::info!("mounted");
    });
    rt.block_on(fs.end_grace_periods());
    ended?;
    tracing::info!("unmounted");
    Ok(())
}

/// Blocks SIGTERM/SIGINT in the calling thread (and threads it starts), so that only the
/// signal thread of [`serve_inner`] receives them.
pub fn block_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(opts: &str) -> MountArgs {
        MountArgs {
            source: "http://h/identity/v2.0".into(),
            mountpoint: "/mnt".into(),
            foreground: true,
            options: vec![opts.into()],
        }
    }

    #[test]
    fn reads_are_verified_by_default_only_over_plain_http_to_another_machine() {
        for (url, verify) in [
            ("http://10.0.0.7:8080/object-store/v1", true),
            ("http://cloud.example.org/object-store/v1", true),
            ("https://cloud.example.org/object-store/v1", false),
            ("https://10.0.0.7/object-store/v1", false),
            ("http://127.0.0.1:18555/object-store/v1", false),
            ("http://127.3.4.5/object-store/v1", false),
            ("http://[::1]:8080/object-store/v1", false),
            ("http://localhost/object-store/v1", false),
            ("not a url", true),
        ] {
            assert_eq!(verify_by_default(url), verify, "{url}");
        }
    }

    #[test]
    fn options() {
        let c = parse_options(&args("ro,uid=7,gid=8,file_mode=600,dir_mode=700,attr_timeout=2.5,container=images,token_file=/t,_netdev,nofail,defaults,x-systemd.automount,rw")).unwrap();
        assert!(c.fs.read_only);
        assert_eq!(
            (c.fs.uid, c.fs.gid, c.fs.file_mode, c.fs.dir_mode),
            (7, 8, 0o600, 0o700)
        );
        assert_eq!(c.fs.attr_ttl, Duration::from_millis(2500));
        assert_eq!(c.fs.container.as_deref(), Some("images"));
        assert_eq!(c.token_file.as_deref(), Some("/t"));
        assert_eq!(c.verify_reads, None);
        assert_eq!(parse_options(&args("verify_reads")).unwrap().verify_reads, Some(true));
        assert_eq!(parse_options(&args("verify_reads=1")).unwrap().verify_reads, Some(true));
        assert_eq!(
            parse_options(&args("verify_reads=0")).unwrap().verify_reads,
            Some(false)
        );
        assert!(matches!(
            parse_options(&args("verify_reads=maybe")),
            Err(MountError::BadValue("verify_reads", _))
        ));
        assert_eq!(c.io_timeout, Duration::from_secs(30));
        assert_eq!(
            parse_options(&args("io_timeout=1.5")).unwrap().io_timeout,
            Duration::from_millis(1500)
        );
        for bad in ["io_timeout=0", "io_timeout=x", "io_timeout"] {
            assert!(matches!(
                parse_options(&args(bad)),
                Err(MountError::BadValue("io_timeout", _))
            ));
        }
        assert_eq!(parse_options(&args("cache_mb=256")).unwrap().fs.cache_blocks, 64);
        assert_eq!(parse_options(&args("cache_mb=1")).unwrap().fs.cache_blocks, 1);
        assert!(matches!(
            parse_options(&args("cache_mb=0")),
            Err(MountError::BadValue("cache_mb", _))
        ));
        assert!(matches!(parse_options(&args("colour=blue")), Err(MountError::UnknownOption(o)) if o == "colour=blue"));
        assert!(matches!(
            parse_options(&args("uid=x")),
            Err(MountError::BadValue("uid", _))
        ));
        assert!(matches!(
            parse_options(&args("file_mode=999")),
            Err(MountError::BadValue("file_mode", _))
        ));
    }

    #[test]
    fn helper_form() {
        let a = parse_helper_args(
            &[
                "mount.imgfs",
                "http://h",
                "/mnt/x",
                "-o",
                "ro,token_file=/t",
                "-n",
                "-v",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_eq!(a.source, "http://h");
        assert_eq!(a.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(a.options, vec!["ro,token_file=/t"]);
        assert!(parse_helper_args(&["mount.imgfs", "only-one"].map(String::from)).is_err());
    }
}
