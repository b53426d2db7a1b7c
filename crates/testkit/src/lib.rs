//! Test-only plumbing for the tests that run against the real peers `e2e/peers.sh` builds
//! and starts (etcd, kube-apiserver, spire-server):
//!
//! - [`PeersEnv`]: the `export K=V` files peers.sh writes (`DIR/env`, `DIR/NAME/env`);
//! - [`Peers`]: a full set of peers, the ones `PEERS_ENV` names (as under `make test`) or
//!   started here;
//! - [`SpireServer`]: a spire-server of its own for one test (`peers.sh spire-up`), stopped on
//!   drop (`peers.sh spire-down`);
//! - [`require_peers`]: without built peers, a loud SKIP, or a failure when
//!   `SPIRE_TESTS_REQUIRE_PEERS` is set;
//! - [`eventually`] and [`free_port`].

use std::collections::BTreeMap;
use std::future::Future;
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::Chars;
use std::sync::OnceLock;
use std::time::Duration;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/testkit sits two levels below the repository root")
        .to_path_buf()
}

/// `e2e/peers.sh`.
pub fn peers_script() -> PathBuf {
    repo_root().join("e2e/peers.sh")
}

/// A `bash e2e/peers.sh` command; add the peers.sh command and its arguments.
pub fn peers_sh() -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(peers_script());
    cmd
}

/// `out`, after asserting that it succeeded (its stdout and stderr in the panic message).
fn succeeded(out: Output, what: &str) -> Output {
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A fresh directory under /tmp: it keeps socket paths short (sun_path is 108 bytes).
fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir_in("/tmp").expect("temp dir in /tmp")
}

// ---------------------------------------------------------------- env files

/// The exports of a peers.sh env file: `export NAME=value` lines, values quoted by bash
/// `printf %q`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeersEnv(pub BTreeMap<String, String>);

impl PeersEnv {
    /// Reads and parses `path`; panics if it cannot be read.
    pub fn read(path: impl AsRef<Path>) -> PeersEnv {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        PeersEnv::parse(&text)
    }

    /// The `export NAME=value` lines of `text`; other lines are passed over.
    pub fn parse(text: &str) -> PeersEnv {
        PeersEnv(
            text.lines()
                .filter_map(|l| l.strip_prefix("export "))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), unquote(v)))
                .collect(),
        )
    }

    /// The value of `key`; panics if the file has none.
    pub fn get(&self, key: &str) -> &str {
        self.0.get(key).unwrap_or_else(|| panic!("{key} missing from the peers env file"))
    }

    /// Runs `kubectl ARGS...` (`KUBECTL`) against `KUBECONFIG`.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.get("KUBECTL"))
            .env("KUBECONFIG", self.get("KUBECONFIG"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// A Kubernetes client for `KUBECONFIG` (its current context: admin).
    #[cfg(feature = "kube")]
    pub async fn kube_client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.get("KUBECONFIG")).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("kube config");
        kube::Client::try_from(config).expect("kube client")
    }
}

/// Undoes bash `printf %q`: backslash escapes, `'...'` and `$'...'` (ANSI-C) quoting.
fn unquote(v: &str) -> String {
    let mut out = Vec::new();
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    push_char(&mut out, n);
                }
            }
            '\'' => {
                for c in chars.by_ref().take_while(|&c| c != '\'') {
                    push_char(&mut out, c);
                }
            }
            '$' if chars.peek() == Some(&'\'') => {
                chars.next();
                unquote_ansi_c(&mut chars, &mut out);
            }
            c => push_char(&mut out, c),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rest of a `$'...'` string, up to and including its closing quote. Octal and hex
/// escapes are bytes (bash writes non-ASCII UTF-8 that way in the C locale).
fn unquote_ansi_c(chars: &mut Peekable<Chars>, out: &mut Vec<u8>) {
    while let Some(c) = chars.next() {
        let byte = match c {
            '\'' => return,
            '\\' => match chars.next() {
                None => return,
                Some('n') => b'\n',
                Some('t') => b'\t',
                Some('r') => b'\r',
                Some('a') => 0x07,
                Some('b') => 0x08,
                Some('e' | 'E') => 0x1b,
                Some('f') => 0x0c,
                Some('v') => 0x0b,
                Some(d @ '0'..='7') => digits(chars, 8, d.to_digit(8).unwrap()) as u8,
                Some('x') => digits(chars, 16, 0) as u8,
                Some(other) => {
                    push_char(out, other);
                    continue;
                }
            },
            c => {
                push_char(out, c);
                continue;
            }
        };
        out.push(byte);
    }
}

/// `n` followed by up to two more `radix` digits taken from `chars`.
fn digits(chars: &mut Peekable<Chars>, radix: u32, mut n: u32) -> u32 {
    for _ in 0..2 {
        let Some(d) = chars.peek().and_then(|d| d.to_digit(radix)) else {
            break;
        };
        n = n * radix + d;
        chars.next();
    }
    n
}

fn push_char(out: &mut Vec<u8>, c: char) {
    out.extend(c.encode_utf8(&mut [0; 4]).as_bytes());
}

// ---------------------------------------------------------------- skip or fail

/// Whether `SPIRE_TESTS_REQUIRE_PEERS` is set (non-empty), as under `make test`: then a test
/// must not skip for want of peers.
pub fn peers_required() -> bool {
    std::env::var_os("SPIRE_TESTS_REQUIRE_PEERS").is_some_and(|v| !v.is_empty())
}

/// Whether the peers named (`etcd`, `spire`, `kubernetes`) are built. If not: a panic when
/// [`peers_required`], else a loud SKIP message naming `test`, and false (the test returns).
pub fn require_peers(test: &str, peers: &[&str]) -> bool {
    let missing: Vec<&str> = peers
        .iter()
        .copied()
        .filter(|p| !peers_sh().args(["path", p]).output().is_ok_and(|o| o.status.success()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let why = if peers_script().exists() {
        format!("{} not built (run: e2e/peers.sh build {})", missing.join(", "), missing.join(" "))
    } else {
        format!("{} is missing", peers_script().display())
    };
    if peers_required() {
        panic!("SPIRE_TESTS_REQUIRE_PEERS is set but {why}");
    }
    eprintln!("\n{bar}\nSKIPPED {test}: {why}\n{bar}\n", bar = "!".repeat(78));
    false
}

// ---------------------------------------------------------------- a full set of peers

/// etcd, kube-apiserver and a spire-server (`peers.sh up`): `env` is their `DIR/env`.
pub struct Peers {
    pub env: PeersEnv,
    /// `PEERS_DIR`.
    pub dir: PathBuf,
    /// Started by [`Peers::up`]: `peers.sh down` on drop, then the directory goes.
    own: Option<tempfile::TempDir>,
}

impl Peers {
    /// The peers whose env file `PEERS_ENV` names (as under `make test`), if it is set.
    pub fn from_env() -> Option<Peers> {
        let path = std::env::var_os("PEERS_ENV").filter(|p| !p.is_empty())?;
        let env = PeersEnv::read(path);
        let dir = PathBuf::from(env.get("PEERS_DIR"));
        Some(Peers { env, dir, own: None })
    }

    /// Starts a set of peers of its own in a temp dir; stopped on drop.
    pub fn up() -> Peers {
        let own = tempdir("scm-peers.");
        let dir = own.path().to_path_buf();
        // Built before `peers.sh up` runs, so that a failure stops what it started.
        let mut peers = Peers { env: PeersEnv::default(), dir, own: Some(own) };
        succeeded(peers_sh().arg("up").arg(&peers.dir).output().unwrap(), "peers.sh up");
        peers.env = PeersEnv::read(peers.dir.join("env"));
        peers
    }

    /// The peers of `PEERS_ENV`, else one set started on first use (in
    /// `target/e2e-peers-PID`, logs kept) for the whole test process. A static is never
    /// dropped: a watchdog stops those peers when the process exits, however it exits.
    pub fn shared() -> &'static Peers {
        static SHARED: OnceLock<Peers> = OnceLock::new();
        SHARED.get_or_init(|| Peers::from_env().unwrap_or_else(Peers::up_until_exit))
    }

    fn up_until_exit() -> Peers {
        let dir = repo_root().join("target").join(format!("e2e-peers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let status = peers_sh().arg("up").arg(&dir).status().expect("run e2e/peers.sh up");
        assert!(status.success(), "e2e/peers.sh up {} failed", dir.display());
        let watchdog = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; bash '{script}' down '{dir}' >/dev/null 2>&1",
            pid = std::process::id(),
            script = peers_script().display(),
            dir = dir.display()
        );
        // Outlives this process by design: nothing here waits for it.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watchdog");
        Peers { env: PeersEnv::read(dir.join("env")), dir, own: None }
    }

    /// Applies the CRDs of `crds/` (server-side) and waits until they are established.
    pub fn install_crds(&self) {
        let crds = repo_root().join("crds");
        let crds = crds.to_str().unwrap();
        let out = self.env.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", crds]);
        assert!(out.status.success(), "installing CRDs failed: {}", String::from_utf8_lossy(&out.stderr));
        let out = self.env.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "-f", crds]);
        assert!(out.status.success(), "CRDs not established: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        if self.own.is_some() {
            let _ = peers_sh().arg("down").arg(&self.dir).output();
        }
    }
}

// ---------------------------------------------------------------- a spire-server of its own

/// A spire-server started by `peers.sh spire-up DIR NAME TRUST_DOMAIN`; `env` is its
/// `DIR/NAME/env`. Stopped (`peers.sh spire-down`) on drop.
pub struct SpireServer {
    pub env: PeersEnv,
    dir: PathBuf,
    name: String,
    /// The temp dir of [`SpireServer::start`]; it goes after the server is stopped.
    _tmp: Option<tempfile::TempDir>,
}

impl SpireServer {
    /// A server in a temp dir of its own.
    pub fn start(name: &str, trust_domain: &str) -> SpireServer {
        Self::start_with(name, trust_domain, &[])
    }

    /// Likewise, with more `spire-up` options (`--bundle-endpoint`).
    pub fn start_with(name: &str, trust_domain: &str, extra: &[&str]) -> SpireServer {
        let tmp = tempdir(&format!("scm-{name}."));
        let mut server = Self::start_in(tmp.path(), name, trust_domain, extra);
        server._tmp = Some(tmp);
        server
    }

    /// A server in `dir/name` (e.g. under the shared peers' directory).
    pub fn start_in(dir: &Path, name: &str, trust_domain: &str, extra: &[&str]) -> SpireServer {
        std::fs::create_dir_all(dir).unwrap();
        // Built before `spire-up` runs, so that a failure still ends in `spire-down`.
        let mut server =
            SpireServer { env: PeersEnv::default(), dir: dir.to_path_buf(), name: name.to_owned(), _tmp: None };
        let out = peers_sh()
            .arg("spire-up")
            .arg(dir)
            .args([name, trust_domain])
            .args(extra)
            .output()
            .expect("run e2e/peers.sh spire-up");
        succeeded(out, &format!("peers.sh spire-up {name} {trust_domain}"));
        server.env = PeersEnv::read(dir.join(name).join("env"));
        server
    }

    /// A variable of its env file.
    pub fn var(&self, key: &str) -> &str {
        self.env.get(key)
    }

    /// `SPIRE_SERVER_SOCKET`: the admin API socket.
    pub fn socket(&self) -> &str {
        self.var("SPIRE_SERVER_SOCKET")
    }

    /// `SPIRE_SERVER_BIN`: the spire-server binary.
    pub fn bin(&self) -> &str {
        self.var("SPIRE_SERVER_BIN")
    }

    /// Runs the spire-server CLI (`ARGS... -socketPath SOCKET`) against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(self.bin()).args(args).args(["-socketPath", self.socket()]).output().expect("run spire-server")
    }

    /// [`SpireServer::cli`], asserting success; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = succeeded(self.cli(args), &format!("spire-server {args:?} ({})", self.name));
        String::from_utf8(out.stdout).unwrap()
    }

    /// [`SpireServer::cli_ok`] with `-output json`, parsed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut args = args.to_vec();
        args.extend(["-output", "json"]);
        serde_json::from_str(&self.cli_ok(&args)).expect("spire-server JSON output")
    }

    /// The entries of `spire-server entry show -output json`.
    pub fn entry_show(&self) -> Vec<serde_json::Value> {
        let v = self.cli_json(&["entry", "show"]);
        v["entries"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for SpireServer {
    fn drop(&mut self) {
        let _ = peers_sh().arg("spire-down").arg(&self.dir).arg(&self.name).output();
    }
}

// ---------------------------------------------------------------- small helpers

/// Polls `f` every 100 ms until it returns `Some`; panics after `timeout` naming `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_printf_q_writes() {
        let env = PeersEnv::parse(
            "# written by e2e/peers.sh on 2026-01-01T00:00:00Z; source it\n\
             export PEERS_DIR=/tmp/scm\\ peers/a\n\
             export EMPTY=''\n\
             export QUOTED='a b'\\''c'\n\
             export ANSI=$'line1\\nline2\\t\\'x\\' \\101\\x42'\n\
             export BYTES=$'\\303\\251\\x41\\0101'\n\
             export URL=https://127.0.0.1:8443\n\
             not an export\n",
        );
        assert_eq!(env.get("PEERS_DIR"), "/tmp/scm peers/a");
        assert_eq!(env.get("EMPTY"), "");
        assert_eq!(env.get("QUOTED"), "a b'c");
        assert_eq!(env.get("ANSI"), "line1\nline2\t'x' AB");
        assert_eq!(env.get("BYTES"), "éA\u{8}1");
        assert_eq!(env.get("URL"), "https://127.0.0.1:8443");
        assert_eq!(env.0.len(), 6);
    }

    #[test]
    fn round_trips_through_bash() {
        let value = "a b\t'c'\n\"d\" $e \\f é";
        let Ok(out) = Command::new("bash")
            .env("LC_ALL", "C") // non-ASCII as octal escapes
            .args(["-c", "printf 'export V=%q\\n' \"$1\"", "bash", value])
            .output()
        else {
            return; // no bash: nothing to compare with
        };
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(PeersEnv::parse(&text).get("V"), value, "{text}");
    }

    #[test]
    #[should_panic(expected = "NOPE missing from the peers env file")]
    fn a_missing_variable_panics() {
        PeersEnv::default().get("NOPE");
    }

    #[test]
    fn repo_root_holds_peers_sh() {
        assert!(peers_script().is_file(), "{}", peers_script().display());
    }
}
