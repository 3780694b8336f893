//! PostgreSQL going away under imgfs serve (`pg_restart::`, run in the imgfs-pg-s3 tier:
//! scripts/test.sh installs PostgreSQL; `IMGFS_PG_BIN` names its binaries, else the newest
//! under /usr/lib/postgresql). Each test makes a cluster of its own (initdb and pg_ctl as the
//! `postgres` user, ~1 s) so that stopping it disturbs no other test.

mod common;

mod pg_restart {
    use super::common::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::{Duration, Instant};

    const BLOCK: usize = 4 << 20;

    /// A throwaway PostgreSQL cluster on a free loopback port, removed when dropped.
    struct Cluster {
        bin: PathBuf,
        dir: tempfile::TempDir,
        port: u16,
    }

    fn pg_bin() -> PathBuf {
        if let Some(b) = std::env::var_os("IMGFS_PG_BIN") {
            return b.into();
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
            .unwrap_or_default();
        found.sort();
        found
            .pop()
            .filter(|b| b.join("initdb").exists())
            .expect("PostgreSQL binaries (apt package postgresql, or IMGFS_PG_BIN)")
    }

    fn as_postgres(cmd: &str) -> std::process::Output {
        Command::new("su").args(["postgres", "-c", cmd]).output().unwrap()
    }

    impl Cluster {
        fn start() -> Cluster {
            let bin = pg_bin();
            let dir = tempfile::Builder::new().prefix("imgfs-pg-").tempdir_in("/tmp").unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            Command::new("chown").arg("postgres").arg(dir.path()).status().unwrap();
            let out = as_postgres(&format!(
                "{}/initdb -D {}/data -A trust -U postgres -E UTF8 --locale=C --no-instructions",
                bin.display(),
                dir.path().display()
            ));
            assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
            let c = Cluster { bin, dir, port };
            c.up();
            c
        }

        fn pg_ctl(&self, args: &str) -> std::process::Output {
            let d = self.dir.path().display();
            as_postgres(&format!("{}/pg_ctl -D {d}/data {args}", self.bin.display()))
        }

        fn up(&self) {
            let d = self.dir.path().display();
            let out = self.pg_ctl(&format!(
                "-l {d}/log -w -o '-p {} -k {d} -c listen_addresses=127.0.0.1' start",
                self.port
            ));
            assert!(
                out.status.success(),
                "pg_ctl start: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        /// As a crash would: no checkpoint, connections cut.
        fn down(&self) {
            let out = self.pg_ctl("-m immediate -w stop");
            assert!(
                out.status.success(),
                "pg_ctl stop: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        fn url(&self) -> String {
            format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
        }
    }

    impl Drop for Cluster {
        fn drop(&mut self) {
            let _ = self.pg_ctl("-m immediate stop");
        }
    }

    /// `n` servers over the cluster (more than one: behind HAProxy, round-robin).
    fn servers(pg: &Cluster, data: &Path, n: usize) -> Server {
        let blocks = format!("dir:{}", data.join("blocks").display());
        let args = ["--meta", &pg.url(), "--blocks", &blocks];
        match n {
            1 => Server::start_single(data, "127.0.0.1:0", &args, &[]),
            _ => Server::start_many(n, data, "127.0.0.1:0", &args, &[]),
        }
    }

    fn status(r: &reqwest::blocking::Response) -> u16 {
        r.status().as_u16()
    }

    /// PostgreSQL stopped (as by a crash) 1.5 s into a 1 GiB `cp` through the mount and
    /// started again 3 s later: the copy completes (the mount retries the 503s) or fails with
    /// EIO; either way nothing torn is visible. While it is down `/healthz` says the database
    /// does not answer and requests get 503 with Retry-After, never a 500; once it is back
    /// everything works on the same pool.
    #[test]
    fn postgres_restarted_under_a_copy_tears_nothing() {
        restarted_under_a_copy(1);
    }

    /// The same through three servers behind HAProxy, each with its own pool.
    #[test]
    fn postgres_restarted_under_a_copy_through_three_servers_tears_nothing() {
        restarted_under_a_copy(3);
    }

    fn restarted_under_a_copy(n: usize) {
        let pg = Cluster::start();
        let tmp = tempfile::Builder::new()
            .prefix("imgfs-pgr-")
            .tempdir_in(test_root())
            .unwrap();
        let s = servers(&pg, &tmp.path().join("data"), n);
        let u = s.add_user("alice");
        let api = Api::new(&s, &u);
        assert_eq!(api.put("pithos/before", b"kept").status(), 201);
        let src = tmp.path().join("big.img");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&src).unwrap();
            for i in 0..256u64 {
                f.write_all(&pattern(BLOCK, 9100 + i)).unwrap();
            }
        }
        let want = sha_file(&src);
        let m = Mount::new(&s, &u, "");
        let dst = m.path("pithos/big.img");
        let cp = {
            let (src, dst) = (src.clone(), dst.clone());
            std::thread::spawn(move || Command::new("cp").arg(&src).arg(&dst).output().unwrap())
        };
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!cp.is_finished(), "the restart must come while the copy runs");
        pg.down();
        let down_at = Instant::now();
        // While it is down.
        let health = reqwest::blocking::get(format!("{}/healthz", s.url())).unwrap();
        assert_eq!(status(&health), 503);
        assert!(health.headers().contains_key("retry-after"));
        assert!(health.text().unwrap().contains("metadata database"));
        let r = api.os("GET", "pithos/before").send().unwrap();
        assert_eq!(status(&r), 503, "a request needing the database");
        assert_eq!(r.headers()["retry-after"], "5");
        let r = api.os("PUT", "pithos/during").body("x").send().unwrap();
        assert_eq!(status(&r), 503);
        std::thread::sleep(Duration::from_secs(3).saturating_sub(down_at.elapsed()));
        pg.up();
        let out = cp.join().unwrap();
        // Back: the same server, its pool renewed.
        let t = Instant::now();
        while status(&reqwest::blocking::get(format!("{}/healthz", s.url())).unwrap()) != 200 {
            assert!(t.elapsed() < Duration::from_secs(30), "healthy again within 30 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(api.get("pithos/before"), b"kept");
        assert_eq!(api.put("pithos/after", b"new").status(), 201);
        assert_eq!(
            status(&api.head("pithos/during")),
            404,
            "the refused write left nothing"
        );
        let outcome = whole_or_absent(&api, "pithos/big.img", &out, &want, &dst);
        let retries = m.log().matches("retrying").count();
        eprintln!("cp through {n} server(s) with PostgreSQL restarted under it: {outcome} ({retries} requests retried by the mount)");
        assert!(!m.log().contains("panicked") && !s.log().contains("panicked"));
        assert!(!s.log().contains("status=500"), "no 500 in the server's log");
    }
}
