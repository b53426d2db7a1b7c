//! Which transport the controller under test uses to reach SPIRE: the server's admin
//! socket (default), or TCP + SPIFFE mTLS with an X.509-SVID from a real spire-agent
//! beside the test's spire-server (`SCM_E2E_TRANSPORT=mtls`; `peers.sh agent-up`). The
//! entry and federation suites run unchanged over either (`base_config` asks here).

use std::path::Path;

use crate::harness::{Env, Spire, peers_sh};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Socket,
    Mtls,
}

/// `SCM_E2E_TRANSPORT`: `mtls`, else the socket.
pub fn selected() -> Transport {
    match std::env::var("SCM_E2E_TRANSPORT").as_deref() {
        Ok("mtls") => Transport::Mtls,
        Ok("" | "socket") | Err(_) => Transport::Socket,
        Ok(other) => panic!("SCM_E2E_TRANSPORT={other:?}: expected socket or mtls"),
    }
}

/// The config keys naming `spire` for the selected transport (one YAML line each).
pub fn server_keys(spire: &Spire) -> String {
    match selected() {
        Transport::Socket => format!("spireServerSocketPath: {}\n", spire.socket()),
        Transport::Mtls => mtls_keys(&agent_up(spire, &[])),
    }
}

/// `spireServerAddress` and `workloadAPISocketPath` of an agent's env.
pub fn mtls_keys(agent: &Env) -> String {
    format!(
        "spireServerAddress: {}\nworkloadAPISocketPath: {}\n",
        agent.get("SPIRE_SERVER_ADDRESS"),
        agent.get("SPIRE_AGENT_SOCKET")
    )
}

/// Starts (once; later calls reuse it) a spire-agent beside `spire` and registers this
/// uid (`peers.sh agent-up`, with `args` such as `--ttl 20` or `--no-admin`); its env.
/// `peers.sh spire-down` (the `Spire`'s drop) stops it.
pub fn agent_up(spire: &Spire, args: &[&str]) -> Env {
    let conf = Path::new(spire.var("SPIRE_SERVER_CONFIG"));
    let inst = conf.parent().expect("instance dir");
    let env_file = inst.join("agent-env");
    if env_file.exists() {
        return Env::read(&env_file);
    }
    let name = inst.file_name().unwrap().to_str().unwrap();
    let out = peers_sh()
        .arg("agent-up")
        .arg(spire.var("PEERS_DIR"))
        .arg(name)
        .args(args)
        .output()
        .expect("run e2e/peers.sh agent-up");
    assert!(
        out.status.success(),
        "peers.sh agent-up {name} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Env::read(&env_file)
}

/// Whether an entry is the mTLS transport's own admin entry (`peers.sh agent-up`'s
/// registration of this uid, parented by the join-token agent): the controller keeps it
/// (its own identity), the tests do not count it.
pub fn is_transport_entry(spiffe_id: &str, parent_id: &str) -> bool {
    spiffe_id.ends_with("/controller") && parent_id.contains("/spire/agent/join_token/")
}
