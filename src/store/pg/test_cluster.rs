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
    /// Whether it accepts only TLS connections.
    tls: bool,
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
        let pg = Postgres::init(false);
        pg.start_again();
        pg.create("wardsync");
        pg
    }

    /// [`Postgres::start`], accepting only TLS connections on 127.0.0.1,
    /// with the certificate `cert` and its private key `key` (PEM).
    pub fn start_tls(cert: &Path, key: &Path) -> Postgres {
        let pg = Postgres::init(true);
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            let to = pg.data().join(to);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
            pg.give(&to);
        }
        let hba =
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 reject\n";
        std::fs::write(pg.data().join("pg_hba.conf"), hba).unwrap();
        pg.start_again();
        pg.create("wardsync");
        pg
    }

    /// Creates a cluster, not started.
    fn init(tls: bool) -> Postgres {
        let pg = Postgres { dir: tempfile::tempdir().unwrap(), port: free_port(), tls };
        pg.give(pg.dir.path());
        let mut init = as_owner("initdb");
        init.args([
            "-D",
            pg.data().to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        run(init, "initdb");
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

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again, after [`Postgres::crash`]) on its port.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=on",
            self.port,
            self.dir.path().display()
        ) + if self.tls { " -c ssl=on" } else { "" };
        let mut start = as_owner("pg_ctl");
        start.args(["-D", self.data().to_str().unwrap(), "-o", &options, "-l"]);
        start.arg(self.dir.path().join("postgres.log")).args(["-w", "start"]);
        run(start, "pg_ctl start");
    }

    /// Stops the server at once, without a checkpoint (`pg_ctl stop -m
    /// immediate`): what it committed must come back from its WAL.
    pub fn crash(&self) {
        let mut stop = as_owner("pg_ctl");
        stop.args(["-D", self.data().to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        run(stop, "pg_ctl stop -m immediate");
    }
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
        stop.args(["-D", self.data().to_str().unwrap(), "-m", "immediate", "stop"]);
        let _ = stop.output();
    }
}
