//! The two servers a test can run against, behind one type: a fresh `imgfs serve` of the
//! test's own, or the original Synnefo 0.20 (GRNET's Astakos, Pithos+ and Plankton) that
//! scripts/test.sh started from ../shared/synnefo and that every test of the run shares, each
//! test with users of its own. A scenario is written once as `fn(Peer)`; [`on_both!`] binds it
//! to `imgfs::NAME` and `synnefo::NAME` tests.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Imgfs,
    Synnefo,
}

impl Peer {
    /// For file names.
    pub fn slug(self) -> &'static str {
        match self {
            Peer::Imgfs => "imgfs",
            Peer::Synnefo => "synnefo",
        }
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Peer::Imgfs => "imgfs serve",
            Peer::Synnefo => "Synnefo 0.20",
        })
    }
}

pub struct Cloud {
    pub peer: Peer,
    imgfs: Option<Server>,
    synnefo: Option<Synnefo>,
    /// On the original: a lock that makes its tests take turns, whatever runs them (several
    /// test binaries, cargo's threads), since they count the requests in its one log.
    _turn: Option<std::fs::File>,
}

/// The original, as scripts/test.sh left it running: its folder and the URLs of its env.sh.
struct Synnefo {
    dir: PathBuf,
    identity: String,
    pithos: String,
    image: String,
}

/// One request a server logged.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub method: String,
    /// The path below the service's root (`/<account>/<container>/...` for the object store,
    /// `/images/...` for the registry), without the query.
    pub path: String,
    pub status: u16,
}

impl Synnefo {
    fn from_env() -> Synnefo {
        let dir = std::env::var("IMGFS_SYNNEFO").expect(
            "IMGFS_SYNNEFO is not set: the original Synnefo runs only through scripts/test.sh, \
             which starts it from ../shared/synnefo",
        );
        let dir = PathBuf::from(dir);
        let env = std::fs::read_to_string(dir.join("env.sh"))
            .unwrap_or_else(|e| panic!("{}/env.sh: {e} (is the original Synnefo started?)", dir.display()));
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("no {name} in {}/env.sh", dir.display()))
                .to_string()
        };
        Synnefo {
            identity: var("SNF_IDENTITY_URL"),
            pithos: var("SNF_PITHOS_URL"),
            image: var("SNF_PLANKTON_URL"),
            dir,
        }
    }

    /// Waits for the other tests on the original to finish; the turn ends when the file closes.
    fn take_turn(&self) -> std::fs::File {
        use std::os::fd::AsRawFd;
        let path = self.dir.join("run/tests.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}: {}", path.display(), std::io::Error::last_os_error());
        f
    }

    /// A new Astakos user (verified, accepted, its token issued) and its `pithos` container,
    /// which Synnefo's web UI would create at the first login.
    fn add_user(&self, name: &str) -> TestUser {
        static N: AtomicUsize = AtomicUsize::new(0);
        let (local, domain) = name.split_once('@').unwrap_or((name, "example.org"));
        let email = format!(
            "{local}-{}-{}@{domain}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new(self.dir.join("bin/snf-real-user"))
            .arg(&email)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "snf-real-user {email}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
        let user = TestUser {
            uuid: v["uuid"].as_str().unwrap().into(),
            name: v["name"].as_str().unwrap().into(),
            token: v["token"].as_str().unwrap().into(),
        };
        let api = Api {
            http: http(),
            pithos: self.pithos.clone(),
            image: self.image.clone(),
            user: user.clone(),
            retry_busy: true,
        };
        if api.try_put("pithos", b"").status() == 500 {
            self.restart_workers();
            api.put("pithos", b"");
        }
        user
    }

    /// The original's SQLite module keeps a transaction open when its COMMIT fails ("database
    /// is locked"); from then on that worker holds the write lock and every other write fails
    /// until the worker is replaced. Seen in this test deployment (SQLite in place of
    /// PostgreSQL) after a test writes 12k objects; gunicorn replaces its workers on SIGHUP.
    fn restart_workers(&self) {
        let pid: i32 = std::fs::read_to_string(self.dir.join("run/pithos.pid"))
            .expect("the original's pid file")
            .trim()
            .parse()
            .unwrap();
        eprintln!("the original's Pithos workers hold a stale write lock (SQLite); restarting them");
        // SAFETY: a signal to the gunicorn master this harness's script started.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let journal = self.dir.join("data/pithos.sqlite-journal");
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            if !journal.exists() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    /// Lines of gunicorn's access log: `… "GET /pithos/object-store/v1/… HTTP/1.1" 200 …`.
    fn requests(&self) -> Vec<Logged> {
        let roots = [
            root_path(&self.pithos),
            root_path(&self.image),
            root_path(&self.identity),
        ];
        let log = std::fs::read_to_string(self.dir.join("log/pithos-access.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| {
                let (_, rest) = l.split_once('"')?;
                let (request, rest) = rest.split_once('"')?;
                let mut it = request.split(' ');
                let (method, target) = (it.next()?, it.next()?);
                let status = rest.split_whitespace().next()?.parse().ok()?;
                let path = target.split('?').next()?;
                let path = roots.iter().find_map(|r| path.strip_prefix(r.as_str()))?;
                Some(Logged {
                    method: method.into(),
                    path: path.into(),
                    status,
                })
            })
            .collect()
    }
}

/// The path part of a URL (`http://h:p/pithos/object-store/v1` → `/pithos/object-store/v1`).
fn root_path(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    after_scheme
        .find('/')
        .map_or(String::new(), |i| after_scheme[i..].to_string())
}

impl Cloud {
    pub fn start(peer: Peer) -> Cloud {
        match peer {
            Peer::Imgfs => Cloud {
                peer,
                imgfs: Some(Server::start()),
                synnefo: None,
                _turn: None,
            },
            Peer::Synnefo => {
                let synnefo = Synnefo::from_env();
                let turn = synnefo.take_turn();
                Cloud {
                    peer,
                    imgfs: None,
                    synnefo: Some(synnefo),
                    _turn: Some(turn),
                }
            }
        }
    }

    /// A new user with a `pithos` container. On the original the name becomes a unique
    /// e-mail address (`alice-PID-N@example.org`), which is also its display name there.
    pub fn add_user(&self, name: &str) -> TestUser {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => s.add_user(name),
            (_, Some(s)) => s.add_user(name),
            _ => unreachable!(),
        }
    }

    /// imgfs serve, for what only it shows (its data directory, restarts); `None` on the
    /// original.
    pub fn server(&self) -> Option<&Server> {
        self.imgfs.as_ref()
    }

    /// Every request the server logged so far (on the original, every test's: its tests take
    /// turns). The server logs a request as it answers; callers let the last
    /// line land first.
    pub fn requests(&self) -> Vec<Logged> {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => s.requests(),
            (_, Some(s)) => s.requests(),
            _ => unreachable!(),
        }
    }

    /// The number of blocks the server holds.
    pub fn block_files(&self) -> usize {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => stored_blocks(&s.data).1,
            (_, Some(s)) => {
                fn walk(p: &Path) -> usize {
                    std::fs::read_dir(p)
                        .map(|rd| {
                            rd.map(|e| e.unwrap().path())
                                .map(|p| if p.is_dir() { walk(&p) } else { 1 })
                                .sum()
                        })
                        .unwrap_or(0)
                }
                walk(&s.dir.join("data/blocks/blocks"))
            }
            _ => unreachable!(),
        }
    }

    /// The URL of the server's root, for requests outside the three services.
    pub fn public_base(&self) -> String {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => s.url(),
            (_, Some(s)) => s.pithos.split("/object-store").next().unwrap().to_string(),
            _ => unreachable!(),
        }
    }
}

impl Endpoints for Cloud {
    fn identity_url(&self) -> String {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => s.identity_url(),
            (_, Some(s)) => s.identity.clone(),
            _ => unreachable!(),
        }
    }
    fn pithos_url(&self) -> String {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => s.pithos_url(),
            (_, Some(s)) => s.pithos.clone(),
            _ => unreachable!(),
        }
    }
    fn image_url(&self) -> String {
        match (&self.imgfs, &self.synnefo) {
            (Some(s), _) => s.image_url(),
            (_, Some(s)) => s.image.clone(),
            _ => unreachable!(),
        }
    }
    fn writes_may_be_busy(&self) -> bool {
        self.peer == Peer::Synnefo
    }
}

impl Server {
    /// The requests of this server's log (`… request method=GET path=/object-store/v1/…
    /// status=200 …`), paths below their service's root.
    pub fn requests(&self) -> Vec<Logged> {
        let roots = ["/object-store/v1", "/image/v1.0", "/identity/v2.0", ""];
        self.log()
            .lines()
            .filter_map(|l| {
                let field = |k: &str| {
                    l.split_whitespace()
                        .find_map(|w| w.strip_prefix(k))
                        .map(|v| v.to_string())
                };
                let method = field("method=")?;
                let path = field("path=")?;
                let status = field("status=")?.parse().ok()?;
                let path = roots.iter().find_map(|r| path.strip_prefix(r))?.to_string();
                Some(Logged { method, path, status })
            })
            .collect()
    }
}

/// Binds scenarios `fn NAME(Peer)` to `#[test]`s `imgfs::NAME` and `synnefo::NAME`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod imgfs {
            $( #[test] fn $name() { super::$name($crate::common::Peer::Imgfs) } )*
        }
        mod synnefo {
            $( #[test] fn $name() { super::$name($crate::common::Peer::Synnefo) } )*
        }
    };
}
