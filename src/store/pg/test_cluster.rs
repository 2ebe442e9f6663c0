//! A throwaway PostgreSQL cluster for a test: `initdb` into a temp dir,
//! started on a free loopback port with its socket in that dir, stopped
//! (immediately, as a crash would) and removed on drop. The server
//! binaries are Debian's (`/usr/lib/postgresql/15/bin`, package
//! `postgresql`, which scripts/test.sh installs); as root they run as the
//! `postgres` user. Test scaffolding only: compiled into the library's
//! unit tests, and into the integration tests (tests/common/mod.rs).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian puts the server binaries.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running throwaway cluster.
pub struct Postgres {
    dir: tempfile::TempDir,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its data directory.
    data: PathBuf,
    /// Server settings (`-c name=value ...`) beyond the port and socket.
    settings: String,
}

/// How to set a cluster up: by default, in a temporary directory,
/// accepting plain text, with PostgreSQL's own settings (fsync on).
#[derive(Default)]
pub struct Setup<'a> {
    /// Accept only TLS, with this certificate and private key (PEM files).
    pub tls: Option<(&'a Path, &'a Path)>,
    /// Keep the data in this directory (created by `initdb`) instead.
    pub data: Option<PathBuf>,
    /// Server settings, `name=value`.
    pub settings: &'a [&'a str],
}

fn as_owner(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(mut c: Command, what: &str) {
    let out =
        c.output().unwrap_or_else(|e| panic!("{what}: {e} (is the Debian package postgresql installed?)"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Creates and starts a cluster with a database `wardsync`.
    pub fn start() -> Postgres {
        Postgres::start_with(Setup::default())
    }

    /// Creates and starts a cluster set up as `setup` says, with a
    /// database `wardsync`.
    pub fn start_with(setup: Setup) -> Postgres {
        let dir = tempfile::tempdir().unwrap();
        let mut settings: String = setup.settings.iter().map(|s| format!(" -c {s}")).collect();
        if setup.tls.is_some() {
            settings.push_str(" -c ssl=on");
        }
        let data = setup.data.clone().unwrap_or_else(|| dir.path().join("data"));
        let pg = Postgres { dir, port: free_port(), data, settings };
        pg.give(pg.dir.path());
        if let Some(parent) = pg.data.parent() {
            // The directory made durable before initdb fills it (initdb
            // syncs what is inside, not the name in its parent).
            std::fs::create_dir_all(&pg.data).unwrap();
            std::fs::File::open(parent).and_then(|d| d.sync_all()).unwrap();
            pg.give(&pg.data);
        }
        let mut init = as_owner("initdb");
        init.arg("-D").arg(&pg.data);
        init.args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]);
        run(init, "initdb");
        if let Some((cert, key)) = setup.tls {
            for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
                let to = pg.data.join(to);
                std::fs::copy(from, &to).unwrap();
                std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
                pg.give(&to);
            }
            let hba =
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n";
            std::fs::write(pg.data.join("pg_hba.conf"), hba).unwrap();
        }
        pg.start_again();
        pg.create("wardsync");
        if setup.data.is_some() {
            // What the set-up wrote is on the disk before any test begins.
            // (A file system stricter than Linux's own keeps a new name only
            // once its directory is synced: CREATE DATABASE leaves the new
            // database's directory name unsynced in `base`, so a power cut
            // right after it would lose the database.)
            sync_tree(&pg.data);
        }
        pg
    }

    /// Makes `path` the server's own (when the tests run as root).
    fn give(&self, path: &Path) {
        if is_root() {
            let mut c = Command::new("chown");
            c.arg("postgres:postgres").arg(path);
            run(c, "chown");
        }
    }

    /// A connection URL for the database `wardsync`.
    pub fn url(&self) -> String {
        self.url_of("wardsync")
    }

    /// A connection URL for the database `db`.
    pub fn url_of(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates the database `db`; returns its URL.
    pub fn create(&self, db: &str) -> String {
        let mut create = as_owner("createdb");
        create.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", db]);
        run(create, "createdb");
        self.url_of(db)
    }

    /// Dumps database `db` with pg_dump (custom format) into the file
    /// `name` of the cluster's directory, while it is in use; returns it.
    pub fn dump(&self, db: &str, name: &str) -> PathBuf {
        let file = self.dir.path().join(name);
        let mut dump = as_owner("pg_dump");
        dump.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-Fc", "-f"]);
        dump.arg(&file).arg(db);
        run(dump, "pg_dump");
        file
    }

    /// Replaces database `db` by what the dump `file` holds (dropped,
    /// created again, pg_restore), as an operator restores a backup.
    pub fn restore(&self, db: &str, file: &Path) {
        let port = self.port.to_string();
        let mut drop = as_owner("dropdb");
        drop.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "--force", db]);
        run(drop, "dropdb");
        self.create(db);
        let mut restore = as_owner("pg_restore");
        restore.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", db]).arg(file);
        run(restore, "pg_restore");
    }

    /// Starts the server (again, after [`Postgres::crash`]) on its port.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.path().display()
        ) + &self.settings;
        let mut start = as_owner("pg_ctl");
        start.args(["-D", self.data.to_str().unwrap(), "-o", &options, "-l"]);
        let log = self.dir.path().join("postgres.log");
        start.arg(&log).args(["-w", "start"]);
        let ok = start.status().is_ok_and(|s| s.success());
        let log = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        assert!(
            ok,
            "pg_ctl start failed; the server's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }

    /// Stops the server at once, without a checkpoint (`pg_ctl stop -m
    /// immediate`): what it committed must come back from its WAL.
    /// Returns once the server has exited (not only removed its pid file,
    /// which `pg_ctl` waits for), so that nothing of it writes after.
    pub fn crash(&self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        let pid = pid.lines().next().unwrap_or_default().to_string();
        let mut stop = as_owner("pg_ctl");
        stop.args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        run(stop, "pg_ctl stop -m immediate");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !pid.is_empty() && Path::new("/proc").join(&pid).exists() {
            assert!(std::time::Instant::now() < deadline, "the server (pid {pid}) did not exit");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// fsync of every file and directory under `dir`, and of `dir`.
fn sync_tree(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sync_tree(&path);
        } else {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).unwrap();
        }
    }
    std::fs::File::open(dir).and_then(|d| d.sync_all()).unwrap();
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let mut stop = as_owner("pg_ctl");
        stop.args(["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}
