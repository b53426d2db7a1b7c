//! Flags and subcommands. Upstream's flags (`--config`, `--kubeconfig`, `--expand-env`,
//! the deprecated `--spire-api-socket`) keep their names and meaning.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "spire-controller-manager", version, about = "Keeps SPIRE Server entries and federation relationships in line with ClusterSPIFFEID, ClusterStaticEntry and ClusterFederatedTrustDomain resources")]
pub struct Args {
    /// The controller manager configuration file (kind ControllerManagerConfig).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Expand environment variables ($VAR, ${VAR}) in the configuration file.
    #[arg(long = "expand-env", global = true)]
    pub expand_env: bool,
    /// Path to a kubeconfig; otherwise in-cluster configuration or $KUBECONFIG.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Deprecated: the SPIRE Server API socket (use spireServerSocketPath in the config file).
    #[arg(long = "spire-api-socket")]
    pub spire_api_socket: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the CRD YAML files (to --dir, or to standard output).
    Crds {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Crds { dir }) => write_crds(dir),
        None => anyhow::bail!("the controller is not wired yet"),
    }
}

fn write_crds(dir: Option<PathBuf>) -> anyhow::Result<()> {
    for (name, yaml) in scm_api::crd::all() {
        match &dir {
            Some(dir) => std::fs::write(dir.join(name), yaml)?,
            None => print!("{yaml}"),
        }
    }
    Ok(())
}
