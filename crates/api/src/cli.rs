//! Command-line arguments shared by several subcommands.

use crate::server::{Backend, Settings};
use std::path::PathBuf;

/// Where a process finds its data dir and its event log.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Holds the embedded log, the views and the tokens.
    #[arg(long, default_value = "./data", env = "RECTIFY_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Run on NATS JetStream at this URL (comma-separated for a cluster) instead of the embedded log.
    #[arg(long, env = "RECTIFY_NATS")]
    pub nats: Option<String>,
    /// Replicas of the JetStream stream (3 for a cluster); an existing stream with another count is refused.
    #[arg(long, default_value_t = 1, requires = "nats", env = "RECTIFY_REPLICAS")]
    pub replicas: usize,
}

impl LogArgs {
    /// Default settings for this data dir and log.
    pub fn settings(self) -> Settings {
        let mut settings = Settings::new(self.data_dir);
        settings.backend = self.nats.map_or(Backend::Embedded, |url| Backend::Nats { url, replicas: self.replicas });
        settings
    }
}
