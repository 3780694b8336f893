//! The `imgfs` command: `serve` runs the Synnefo-compatible server; `user` manages its users.

use clap::{Parser, Subcommand};
use imgfs::server::{serve, AppState};
use imgfs::store::block_on;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "imgfs", version, about = "Manage cloud disk images with ordinary file tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct DataArg {
    /// Data directory: short for --meta sqlite:DIR --blocks dir:DIR/blocks [default:
    /// $IMGFS_DATA or ~/.local/share/imgfs]
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Metadata database: sqlite:DIR [default: $IMGFS_META]
    #[arg(long, env = "IMGFS_META", value_name = "URL")]
    meta: Option<String>,
    /// Block store: dir:PATH or s3://BUCKET[/PREFIX] (endpoint and keys from AWS_*)
    /// [default: $IMGFS_BLOCKS, else dir:DIR/blocks beside sqlite:DIR]
    #[arg(long, env = "IMGFS_BLOCKS", value_name = "URL")]
    blocks: Option<String>,
}

impl DataArg {
    fn open(&self) -> anyhow::Result<std::sync::Arc<imgfs::store::Engine<imgfs::store::sql::SqlStore>>> {
        let at = storage(self.data.as_deref(), self.meta.as_deref(), self.blocks.as_deref())?;
        let store = imgfs::open_storage(&at)?;
        block_on(store.claim_blocks_on_start())?;
        Ok(store)
    }
}

/// What the storage options name; with none, `$IMGFS_DATA` or `~/.local/share/imgfs`.
fn storage(
    data: Option<&std::path::Path>,
    meta: Option<&str>,
    blocks: Option<&str>,
) -> anyhow::Result<imgfs::store::location::Storage> {
    let data = data.map(PathBuf::from).or_else(|| {
        // (IMGFS_DATA only stands in when no --meta is given either)
        std::env::var_os("IMGFS_DATA")
            .filter(|_| meta.is_none())
            .map(PathBuf::from)
    });
    Ok(imgfs::store::location::Storage::resolve(
        data.as_deref(),
        meta,
        blocks,
        default_data_dir,
    )?)
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the identity, object-storage and image APIs of a Synnefo cloud
    Serve {
        /// Settings file (TOML; keys as the options below, `_` for `-`). The command line
        /// wins over the environment (IMGFS_<OPTION>), which wins over the file
        #[arg(long, env = "IMGFS_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: imgfs::server::settings::ServeSettings,
    },
    /// The metadata database itself
    Db {
        #[command(subcommand)]
        cmd: DbCmd,
    },
    /// Collect garbage in a data directory now (beside a running server too), printing what
    /// was freed as JSON
    Gc {
        #[command(flatten)]
        data: DataArg,
        /// Seconds unheld data must be old to go (what `serve --gc-grace` says)
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        grace: u64,
    },
    /// Copy a single-machine data directory to other storage (blocks to S3, say): metadata
    /// snapshot first, then every block it holds, verified, then the snapshot in place.
    /// Resumable (run it again); prints what it did as JSON
    Migrate {
        /// The data directory to copy (a server may run on it; writes after the snapshot stay behind)
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// Where the metadata goes: sqlite:DIR (a directory without a meta.db) or
        /// postgres://USER[:PASS]@HOST:PORT/DB (a schema that holds nothing yet)
        #[arg(long, value_name = "URL")]
        meta: String,
        /// Where the blocks go: dir:PATH or s3://BUCKET[/PREFIX] [default: dir:DIR/blocks]
        #[arg(long, value_name = "URL")]
        blocks: Option<String>,
    },
    /// Mount an account (SOURCE: an identity URL or kamaki:CLOUD) on MOUNTPOINT
    Mount {
        source: String,
        mountpoint: PathBuf,
        /// Mount options: ro, uid, gid, file_mode, dir_mode, allow_other, attr_timeout,
        /// container, token_file, log_file, staging_dir
        #[arg(short = 'o', value_name = "OPTS")]
        options: Vec<String>,
        /// Stay in the foreground
        #[arg(short = 'f')]
        foreground: bool,
    },
    /// Manage the users of the embedded server
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
}

#[derive(Subcommand)]
enum DbCmd {
    /// Create the schema (PostgreSQL: tables in the URL's database, in the schema its
    /// search_path names first, made if missing) or migrate it to this version (SQLite), and
    /// mark the block store as its; servers do the same when they start. Prints
    /// {"meta","blocks","schema_version"}
    Migrate {
        #[command(flatten)]
        data: DataArg,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    /// Create a user with a token and a `pithos` container; prints {"uuid","name","token"}
    Add {
        name: String,
        #[command(flatten)]
        data: DataArg,
        /// The server's URL, for the kamaki config lines printed on stderr
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// List users (uuid and name)
    List {
        #[command(flatten)]
        data: DataArg,
    },
    /// Issue a new token for a user; prints {"uuid","name","token","expires"}. The user's
    /// other tokens keep working until they expire, unless --rotate
    Token {
        name: String,
        /// Revoke the user's other tokens now (after a leak)
        #[arg(long)]
        rotate: bool,
        /// Seconds the token works [default: 30 days]
        #[arg(long, value_name = "SECS")]
        lifetime: Option<u64>,
        #[command(flatten)]
        data: DataArg,
    },
    /// Revoke every token of a user (requests with them get 401 at once)
    Revoke {
        name: String,
        #[command(flatten)]
        data: DataArg,
    },
    /// Set a user's quota: the bytes its account may make the server store (uploads not yet
    /// in an object and kept versions included); 0 = no limit
    Quota {
        name: String,
        bytes: u64,
        #[command(flatten)]
        data: DataArg,
    },
}

fn find_user(store: &imgfs::store::sql::SqlStore, name: &str) -> anyhow::Result<imgfs::store::User> {
    store
        .user_by_name(name)?
        .ok_or_else(|| anyhow::anyhow!("no user named {name}"))
}

fn default_data_dir() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".local/share/imgfs")
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // Run as mount.imgfs (what `mount -t imgfs` and fstab call), take the helper's arguments.
    let helper = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "mount.imgfs");
    let cli = if helper {
        match imgfs::mount::parse_helper_args(&argv) {
            Ok(a) => Cli {
                cmd: Cmd::Mount {
                    source: a.source,
                    mountpoint: a.mountpoint,
                    options: a.options,
                    foreground: a.foreground,
                },
            },
            Err(e) => {
                eprintln!("mount.imgfs: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        Cli::parse()
    };
    if !matches!(cli.cmd, Cmd::Mount { .. }) {
        // What the server and the user commands write (metadata, blocks, tokens) is the
        // server's user's alone: files 0600, directories 0700.
        // SAFETY: umask only sets the process's file-creation mask; it cannot fail.
        unsafe { libc::umask(0o077) };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMGFS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imgfs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Serve { config, settings } => {
            use imgfs::server::settings::ServeSettings;
            let file = match &config {
                Some(f) => ServeSettings::from_file(f)?,
                None => ServeSettings::default(),
            };
            let set = settings.or(file).resolve()?;
            let tls = match &set.tls {
                Some((c, k)) => Some(imgfs::server::tls_config(c, k)?),
                None => None,
            };
            let limits = imgfs::server::Limits {
                max_connections: set.limits_max_connections,
                header_timeout: set.header_timeout,
                body_idle_timeout: set.body_idle_timeout,
            };
            let at = storage(set.data.as_deref(), set.meta.as_deref(), set.blocks.as_deref())?;
            let listen = set.listen.clone();
            let store = std::sync::Arc::new(imgfs::open_storage(&at)?.erased());
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async move {
                store.claim_blocks_on_start().await?;
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
                let addr = listener.local_addr()?;
                let scheme = if tls.is_some() { "https" } else { "http" };
                tracing::info!(%addr, scheme, meta = %at.meta, blocks = %at.blocks, "imgfs serve listening");
                // Scripts and tests started with port 0 read the address from here.
                println!("listening on {addr}");
                use std::io::Write;
                std::io::stdout().flush()?;
                let state = AppState::new(store.clone());
                imgfs::server::collector::spawn(
                    store,
                    state.metrics.clone(),
                    imgfs::server::collector::GcSchedule {
                        grace: set.gc_grace,
                        interval: set.gc_interval,
                    },
                );
                serve(state, listener, limits, tls).await?;
                Ok(())
            })
        }
        Cmd::Mount {
            source,
            mountpoint,
            options,
            foreground,
        } => {
            imgfs::mount::block_signals();
            imgfs::mount::run(imgfs::mount::MountArgs {
                source,
                mountpoint,
                foreground,
                options,
            })?;
            Ok(())
        }
        Cmd::User {
            cmd: UserCmd::Add { name, data, url },
        } => {
            if name.trim().is_empty() || name.len() > 256 {
                anyhow::bail!("a user name must be 1 to 256 characters");
            }
            let store = data.open()?;
            let (user, token) = store.create_user(&name)?;
            println!(
                "{}",
                serde_json::json!({"uuid": user.uuid, "name": user.name, "token": token})
            );
            let url = url.trim_end_matches('/');
            eprintln!("# kamaki configuration for this server:");
            eprintln!("kamaki config set cloud.imgfs.url {url}/identity/v2.0");
            eprintln!("kamaki config set cloud.imgfs.token {token}");
            eprintln!("kamaki config set default_cloud imgfs");
            Ok(())
        }
        Cmd::Migrate { from, meta, blocks } => {
            let to = imgfs::store::location::Storage::resolve(None, Some(&meta), blocks.as_deref(), default_data_dir)?;
            let started = std::time::Instant::now();
            let mut said = std::time::Instant::now();
            let report = imgfs::migrate::migrate(&from, &to, |done, total| {
                if said.elapsed() >= std::time::Duration::from_secs(5) || done == total {
                    eprintln!("imgfs migrate: {done} of {total} blocks");
                    said = std::time::Instant::now();
                }
            })?;
            eprintln!("imgfs migrate: done in {:.1} s", started.elapsed().as_secs_f64());
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Cmd::Db {
            cmd: DbCmd::Migrate { data },
        } => {
            let at = storage(data.data.as_deref(), data.meta.as_deref(), data.blocks.as_deref())?;
            let store = imgfs::open_storage(&at)?;
            block_on(store.claim_blocks())?;
            block_on(store.health())?;
            println!(
                "{}",
                serde_json::json!({
                    "meta": at.meta.to_string(),
                    "blocks": at.blocks.to_string(),
                    "schema_version": imgfs::store::sql::SCHEMA_VERSION,
                })
            );
            Ok(())
        }
        Cmd::Gc { data, grace } => {
            let store = data.open()?;
            let report = block_on(store.collect_garbage(std::time::Duration::from_secs(grace)))?;
            println!("{}", serde_json::to_string(&report)?);
            if report.skipped {
                anyhow::bail!("another collector is running over this data directory; nothing was done");
            }
            Ok(())
        }
        Cmd::User {
            cmd:
                UserCmd::Token {
                    name,
                    rotate,
                    lifetime,
                    data,
                },
        } => {
            let store = data.open()?;
            let user = find_user(store.meta().as_ref(), &name)?;
            let lifetime = lifetime.map_or(imgfs::store::DEFAULT_TOKEN_LIFETIME, std::time::Duration::from_secs);
            let (token, expires) = store.issue_token(&user.uuid, lifetime, rotate)?;
            println!(
                "{}",
                serde_json::json!({"uuid": user.uuid, "name": user.name, "token": token,
                                   "expires": imgfs::api::timefmt::iso_micros(expires)})
            );
            Ok(())
        }
        Cmd::User {
            cmd: UserCmd::Revoke { name, data },
        } => {
            let store = data.open()?;
            let user = find_user(store.meta().as_ref(), &name)?;
            let n = store.revoke_tokens(&user.uuid)?;
            eprintln!("revoked {n} live token(s) of {name}");
            Ok(())
        }
        Cmd::User {
            cmd: UserCmd::Quota { name, bytes, data },
        } => {
            let store = data.open()?;
            let user = find_user(store.meta().as_ref(), &name)?;
            store.set_account_quota(&user.uuid, bytes)?;
            Ok(())
        }
        Cmd::User {
            cmd: UserCmd::List { data },
        } => {
            let store = data.open()?;
            for u in store.list_users()? {
                println!("{}\t{}", u.uuid, u.name);
            }
            Ok(())
        }
    }
}
