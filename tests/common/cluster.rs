//! A real streaming replica of the test server (`pg_basebackup` into a temporary directory, on
//! a port of its own, with `recovery_min_apply_delay` to make it lag) and a real PgBouncer in
//! transaction mode: started by a test, stopped when it drops. Both run as the `postgres`
//! user when the tests run as root (PostgreSQL and PgBouncer refuse root). Missing tools or a
//! server that refuses replication connections fail the test with what to do.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::postgres_admin_url;

/// The test server's host and port, from `TEST_DATABASE_URL`.
fn primary_address() -> (String, u16) {
    let url = postgres_admin_url();
    let rest = url.split('@').next_back().unwrap_or(&url);
    let host_port = rest.split('/').next().unwrap_or("127.0.0.1:5432");
    let (host, port) = host_port.split_once(':').unwrap_or((host_port, "5432"));
    (host.to_owned(), port.parse().unwrap_or(5432))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A server program's command, run as `postgres` when we are root.
fn server_command(program: &Path) -> Command {
    if running_as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// Runs a server program; panics with its output, and `hint`, on failure.
fn run_as_server_user(program: &Path, args: &[&str], hint: &str) {
    let output = server_command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        output.status.success(),
        "{} {args:?} failed: {}{}{hint}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Makes `path` and what it holds the server user's (when we are root).
fn give_to_server_user(path: &Path) {
    if running_as_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .expect("chown");
        assert!(status.success(), "chown of {}", path.display());
    }
}

/// A directory the server user owns.
fn server_dir(prefix: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("a temporary directory");
    give_to_server_user(dir.path());
    dir
}

/// The PostgreSQL programs of the test server's major version.
fn postgres_bin(program: &str) -> PathBuf {
    let version = Command::new("psql")
        .args([&postgres_admin_url(), "-Atqc", "SHOW server_version_num"])
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u32>()
                .ok()
        })
        .map(|num| num / 10_000)
        .expect("psql reaches the test server (Debian: postgresql-client)");
    let path = PathBuf::from(format!("/usr/lib/postgresql/{version}/bin/{program}"));
    assert!(
        path.exists(),
        "{} is missing (Debian: postgresql-{version})",
        path.display()
    );
    path
}

/// A hot standby of the test server, streaming, `apply_delay` behind.
pub struct StreamingReplica {
    pub port: u16,
    dir: TempDir,
}

impl StreamingReplica {
    pub fn start(apply_delay: Duration) -> Self {
        let (host, primary_port) = primary_address();
        let dir = server_dir("ua-replica-");
        let data = dir.path().join("data");
        let data_arg = data.to_str().expect("a UTF-8 path");
        run_as_server_user(
            &postgres_bin("pg_basebackup"),
            &[
                "-h",
                &host,
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                data_arg,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            "\nthe test server must accept replication connections from 127.0.0.1 \
             (pg_hba.conf: `host replication all 127.0.0.1/32 trust`; .ci/run adds it)",
        );
        let port = free_port();
        // Debian keeps the server's configuration outside its data directory: the copy has
        // none, so it gets one of its own.
        let config = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket}'\n\
             hot_standby = on\nrecovery_min_apply_delay = '{delay}ms'\n\
             wal_receiver_status_interval = '100ms'\n\
             cluster_name = 'ua_test_replica_{port}'\nfsync = off\n",
            socket = dir.path().display(),
            delay = apply_delay.as_millis(),
        );
        std::fs::write(data.join("postgresql.conf"), config).expect("postgresql.conf");
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 trust\n",
        )
        .expect("pg_hba.conf");
        std::fs::write(data.join("pg_ident.conf"), "").expect("pg_ident.conf");
        give_to_server_user(&data);
        let replica = Self { port, dir };
        replica.pg_ctl(&["start", "-w", "-t", "60"]);
        replica
    }

    /// The name the primary knows this standby by (`pg_stat_replication.application_name`).
    pub fn application_name(&self) -> String {
        format!("ua_test_replica_{}", self.port)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server at once (connections cut), then starts it again.
    pub fn restart(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60"]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        pg_ctl(self.dir.path(), args);
    }
}

/// `pg_ctl` on the server whose data and log are in `dir`.
fn pg_ctl(dir: &Path, args: &[&str]) {
    let data = dir.join("data");
    let log = dir.join("server.log");
    let mut all = vec![
        "-D",
        data.to_str().expect("UTF-8"),
        "-l",
        log.to_str().expect("UTF-8"),
    ];
    all.extend_from_slice(args);
    run_as_server_user(&postgres_bin("pg_ctl"), &all, "");
}

/// Stops the server in `dir` at once, whatever its state (drop).
fn stop_now(dir: &Path) {
    let _ = server_command(&postgres_bin("pg_ctl"))
        .arg("-D")
        .arg(dir.join("data"))
        .args(["stop", "-m", "immediate", "-w"])
        .output();
}

impl Drop for StreamingReplica {
    fn drop(&mut self) {
        stop_now(self.dir.path());
    }
}

/// A PostgreSQL server of the test's own (`initdb` on a free port), for tests that stop and
/// start the database: the machine's server is never touched.
pub struct OwnServer {
    pub port: u16,
    dir: TempDir,
}

impl OwnServer {
    pub fn start() -> Self {
        let dir = server_dir("ua-server-");
        let data = dir.path().join("data");
        run_as_server_user(
            &postgres_bin("initdb"),
            &[
                "-D",
                data.to_str().expect("a UTF-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
            "",
        );
        let port = free_port();
        let config = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{socket}'\n\
             fsync = off\nmax_connections = 50\n",
            socket = dir.path().display(),
        );
        std::fs::write(data.join("postgresql.auto.conf"), config).expect("postgresql.auto.conf");
        give_to_server_user(&data);
        let server = Self { port, dir };
        server.start_again();
        server
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server as an operator's restart does (`-m fast`: sessions are told and cut).
    pub fn stop(&self) {
        pg_ctl(self.dir.path(), &["stop", "-m", "fast", "-w", "-t", "60"]);
    }

    pub fn start_again(&self) {
        pg_ctl(self.dir.path(), &["start", "-w", "-t", "60"]);
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        stop_now(self.dir.path());
    }
}

/// PgBouncer in transaction mode in front of the test server.
pub struct PgBouncer {
    pub port: u16,
    dir: TempDir,
}

impl PgBouncer {
    /// `pool_size` server connections per database and user: small, so clients share them.
    pub fn start(pool_size: u32) -> Self {
        let (host, primary_port) = primary_address();
        let dir = server_dir("ua-pgbouncer-");
        let port = free_port();
        let config = format!(
            "[databases]\n* = host={host} port={primary_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {dir}/users.txt\npool_mode = transaction\n\
             default_pool_size = {pool_size}\nmax_client_conn = 500\n\
             ignore_startup_parameters = extra_float_digits\n\
             logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            dir = dir.path().display(),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), config).expect("pgbouncer.ini");
        std::fs::write(dir.path().join("users.txt"), "\"postgres\" \"\"\n").expect("users");
        give_to_server_user(dir.path());
        let bouncer = Self { port, dir };
        bouncer.launch();
        bouncer
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn launch(&self) {
        let program = which("pgbouncer").expect("pgbouncer is installed (Debian: pgbouncer)");
        let ini = self.dir.path().join("pgbouncer.ini");
        run_as_server_user(&program, &["-d", ini.to_str().expect("UTF-8")], "");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "pgbouncer did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops PgBouncer (every client connection cut) and starts it again on the same port.
    pub fn restart(&self, down_for: Duration) {
        self.stop();
        std::thread::sleep(down_for);
        self.launch();
    }

    fn stop(&self) {
        let pid =
            std::fs::read_to_string(self.dir.path().join("pgbouncer.pid")).unwrap_or_default();
        let pid = pid.trim();
        if pid.is_empty() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", pid]).status();
        let started = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && started.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|path| path.exists())
        })
        .or_else(|| {
            let sbin = PathBuf::from("/usr/sbin").join(program);
            sbin.exists().then_some(sbin)
        })
}
