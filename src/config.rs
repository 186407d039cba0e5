//! `janitor.conf`: the Janitor configuration in protobuf text format.
//!
//! The message types are generated at build time from `proto/config.proto` (same package,
//! message names, field names and numbers as the Python services use), and the text is read
//! by rust-protobuf's reflection-based text-format parser.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

// Generated code: the project's lint choices are not its generator's.
#[allow(clippy::pedantic)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/proto/mod.rs"));
}

pub use generated::config::campaign::Build as CampaignBuild;
pub use generated::config::{
    AptRepository, BugTracker, BugTrackerKind, Campaign, Config as ConfigMessage, DebianBuild,
    Distribution, GenericBuild, MergeProposalConfig, OAuth2Provider,
};

/// Why a configuration could not be loaded. Parse errors name file, line, column and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read configuration: {source}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// What reading it failed with.
        source: std::io::Error,
    },
    /// The text is not a valid configuration.
    #[error("{path}:{line}:{column}: {}{message}", field.as_deref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// Line of the error, 1-based; 0 when the parser gave no position.
        line: u32,
        /// Column of the error; 0 when the parser gave no position.
        column: u32,
        /// The field at fault: the unknown field named, else the one starting the error's line.
        field: Option<String>,
        /// The parser's message.
        message: String,
    },
}

/// A loaded configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The parsed `janitor.conf` message.
    pub message: ConfigMessage,
    /// The `control` campaign used when the file defines none (built on first use).
    default_control: std::sync::OnceLock<Campaign>,
}

/// The campaign whose runs are the unchanged codebase, for comparison.
pub const CONTROL_CAMPAIGN: &str = "control";

static LOCATED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^(\d+):(\d+): (.*)$").expect("static regex compiles"));
static FIELD_AT_LINE_START: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*[:{]").expect("static regex compiles")
});
static UNKNOWN_FIELD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"Unknown field: `([^`]*)`").expect("static regex compiles"));

impl Config {
    /// Reads and parses the configuration file at `path`.
    pub async fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        Self::parse(&text, path)
    }

    /// Parses configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        match protobuf::text_format::parse_from_str::<ConfigMessage>(text) {
            Ok(message) => Ok(Self::from_message(message)),
            Err(error) => Err(located_error(text, path, &error.to_string())),
        }
    }

    /// Wraps an already parsed configuration message.
    pub fn from_message(message: ConfigMessage) -> Self {
        Self {
            message,
            default_control: std::sync::OnceLock::new(),
        }
    }

    /// The first campaign with this name (later duplicates are ignored, as in Python). A
    /// configuration without a `control` campaign gets a default one (DECISIONS.md 14), so the
    /// publisher's control runs are built rather than aborted as `unknown-campaign`.
    pub fn campaign(&self, name: &str) -> Option<&Campaign> {
        let configured = self.message.campaign.iter().find(|c| c.name() == name);
        if configured.is_none() && name == CONTROL_CAMPAIGN {
            return Some(self.default_control.get_or_init(|| self.default_control()));
        }
        configured
    }

    /// Builds the unchanged codebase the way the configured campaigns build: with the first
    /// Debian campaign's build settings when every campaign that builds is a Debian one,
    /// else generically. Always builds, since the build is the point of a control run.
    fn default_control(&self) -> Campaign {
        let mut control = Campaign::new();
        control.set_name(CONTROL_CAMPAIGN.to_string());
        control.set_branch_name(CONTROL_CAMPAIGN.to_string());
        control.set_force_build(true);
        let builds: Vec<&CampaignBuild> = self
            .message
            .campaign
            .iter()
            .filter_map(|c| c.build.as_ref())
            .collect();
        let debian = builds.iter().find_map(|build| match build {
            CampaignBuild::DebianBuild(debian) => Some(debian.clone()),
            CampaignBuild::GenericBuild(_) => None,
        });
        match debian {
            Some(debian)
                if builds
                    .iter()
                    .all(|b| matches!(b, CampaignBuild::DebianBuild(_))) =>
            {
                control.set_debian_build(debian);
            }
            _ => control.set_generic_build(GenericBuild::new()),
        }
        control
    }

    /// The configured campaigns, in file order (without the default `control` campaign).
    pub fn campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.message.campaign.iter()
    }

    /// The configured distribution with this name.
    pub fn distribution(&self, name: &str) -> Option<&Distribution> {
        self.message.distribution.iter().find(|d| d.name() == name)
    }

    /// The `committer` identity for the changes workers make; `None` when unset or empty.
    pub fn committer(&self) -> Option<&str> {
        self.message.committer.as_deref().filter(|c| !c.is_empty())
    }

    /// The `database_location` PostgreSQL URL; `None` when unset or empty.
    pub fn database_location(&self) -> Option<&str> {
        self.message
            .database_location
            .as_deref()
            .filter(|c| !c.is_empty())
    }

    /// The `redis_location` URL; `None` when unset or empty.
    pub fn redis_location(&self) -> Option<&str> {
        self.message
            .redis_location
            .as_deref()
            .filter(|c| !c.is_empty())
    }

    /// The `logs_location` where run logs are stored; `None` when unset or empty.
    pub fn logs_location(&self) -> Option<&str> {
        self.message
            .logs_location
            .as_deref()
            .filter(|c| !c.is_empty())
    }

    /// The `artifact_location` where run artifacts are stored; `None` when unset or empty.
    pub fn artifact_location(&self) -> Option<&str> {
        self.message
            .artifact_location
            .as_deref()
            .filter(|c| !c.is_empty())
    }

    /// The `zipkin_address` spans are sent to (the collector's `/api/v2/spans` URL); `None`
    /// when unset or empty.
    pub fn zipkin_address(&self) -> Option<&str> {
        self.message
            .zipkin_address
            .as_deref()
            .filter(|c| !c.is_empty())
    }

    /// The `User-Agent` of every outbound request: `user_agent`, or the Python's default
    /// (`janitor/<version>`) when unset or empty.
    pub fn user_agent(&self) -> String {
        self.message
            .user_agent
            .as_deref()
            .filter(|c| !c.is_empty())
            .map_or_else(default_user_agent, str::to_string)
    }

    /// The fields this configuration sets that the runner does not read, as the Python runner
    /// does not either: they configure other Janitor services (the site, the publisher, the
    /// archive). Named once at start-up, so a field meant for the runner is not silently lost.
    pub fn unread_fields(&self) -> Vec<String> {
        let m = &self.message;
        let mut unread: Vec<String> = [
            ("origin", m.origin.is_some()),
            ("oauth2_provider", m.oauth2_provider.is_some()),
            ("git_location", m.git_location.is_some()),
            ("bzr_location", m.bzr_location.is_some()),
            ("bugtracker", !m.bugtracker.is_empty()),
            ("apt_repository", !m.apt_repository.is_empty()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| name.to_string())
        .collect();
        for campaign in &m.campaign {
            let name = campaign.name.as_deref().unwrap_or_default();
            if campaign.merge_proposal.is_some() {
                unread.push(format!("campaign[{name}].merge_proposal"));
            }
            if !campaign.bugtracker.is_empty() {
                unread.push(format!("campaign[{name}].bugtracker"));
            }
        }
        for distribution in &m.distribution {
            let name = distribution.name.as_deref().unwrap_or_default();
            if !distribution.extra.is_empty() {
                unread.push(format!("distribution[{name}].extra"));
            }
            if !distribution.chroot_alias.is_empty() {
                unread.push(format!("distribution[{name}].chroot_alias"));
            }
        }
        unread
    }
}

/// The Python's default `User-Agent`, `janitor/<version>`, with this runner's version.
pub fn default_user_agent() -> String {
    concat!("janitor/", env!("CARGO_PKG_VERSION")).to_string()
}

fn located_error(text: &str, path: &Path, rendered: &str) -> ConfigError {
    let (line, column, message) = match LOCATED.captures(rendered) {
        Some(caps) => (
            caps[1].parse().unwrap_or(0),
            caps[2].parse().unwrap_or(0),
            caps[3].to_string(),
        ),
        None => (0, 0, rendered.to_string()),
    };
    let field = UNKNOWN_FIELD
        .captures(&message)
        .map(|caps| caps[1].to_string())
        .or_else(|| {
            let source_line = text.lines().nth((line as usize).checked_sub(1)?)?;
            FIELD_AT_LINE_START
                .captures(source_line)
                .map(|caps| caps[1].to_string())
        });
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        field,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("janitor.conf"))
    }

    #[test]
    fn a_control_campaign_exists_when_none_is_configured() {
        let mixed = parse(
            r#"campaign { name: "a" debian_build { base_distribution: "unstable" } }
               campaign { name: "b" generic_build {} }"#,
        )
        .unwrap();
        let control = mixed.campaign("control").unwrap();
        assert_eq!(control.name(), "control");
        assert!(control.force_build());
        assert!(matches!(
            control.build,
            Some(CampaignBuild::GenericBuild(_))
        ));
        assert_eq!(mixed.campaigns().count(), 2);
        assert!(mixed.campaign("other").is_none());

        let debian = parse(
            r#"campaign { name: "a" debian_build { base_distribution: "unstable" build_suffix: "x" } }
               campaign { name: "b" debian_build { base_distribution: "bookworm" } }"#,
        )
        .unwrap();
        match &debian.campaign("control").unwrap().build {
            Some(CampaignBuild::DebianBuild(build)) => {
                assert_eq!(build.base_distribution(), "unstable");
            }
            other => panic!("{other:?}"),
        }

        let configured = parse(
            r#"campaign { name: "control" command: "brz up" generic_build { chroot: "c" } }"#,
        )
        .unwrap();
        let control = configured.campaign("control").unwrap();
        assert_eq!(control.command(), "brz up");
        assert!(!control.force_build());
    }

    #[test]
    fn reads_campaigns_and_distributions() {
        let config = parse(
            r#"
            committer: "Janitor <janitor@example.org>"
            distribution { name: "unstable" component: "main" component: "contrib" vendor: "debian" }
            campaign {
              name: "lintian-fixes" command: "lintian-brush"
              debian_build { base_distribution: "unstable" build_suffix: "jan+lint" }
            }
            campaign { name: "lintian-fixes" command: "shadowed" }
            campaign { name: "up" generic_build { chroot: "x" } force_build: true }
            bugtracker { kind: gitlab url: "https://salsa.debian.org/x" }
            "#,
        )
        .unwrap();
        let campaign = config.campaign("lintian-fixes").unwrap();
        assert_eq!(campaign.command(), "lintian-brush");
        assert!(campaign.has_debian_build());
        assert_eq!(campaign.debian_build().build_suffix(), "jan+lint");
        let up = config.campaign("up").unwrap();
        assert!(up.force_build());
        assert!(!up.default_empty());
        assert_eq!(up.generic_build().chroot(), "x");
        assert_eq!(
            config.distribution("unstable").unwrap().component,
            ["main", "contrib"]
        );
        assert_eq!(config.committer(), Some("Janitor <janitor@example.org>"));
        assert!(config.campaign("missing").is_none());
    }

    #[test]
    fn names_the_fields_other_services_read() {
        let config = parse(
            "git_location: \"https://example.org/git\"\n\
             user_agent: \"janitor.example/1\"\n\
             zipkin_address: \"http://zipkin:9411/api/v2/spans\"\n\
             campaign { name: \"lintian-fixes\" merge_proposal { title: \"x\" } }\n",
        )
        .unwrap();
        assert_eq!(
            config.unread_fields(),
            ["git_location", "campaign[lintian-fixes].merge_proposal"]
        );
        assert_eq!(config.user_agent(), "janitor.example/1");
        assert_eq!(
            config.zipkin_address(),
            Some("http://zipkin:9411/api/v2/spans")
        );
        let bare = parse("").unwrap();
        assert!(bare.unread_fields().is_empty());
        assert!(bare.user_agent().starts_with("janitor/"));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let err = parse("committer: \"x\"\n  campaign { name: \"a\"\n  no_such_field: 1 }\n")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("janitor.conf:3:"), "{text}");
        assert!(text.contains("no_such_field"), "{text}");
        let err = parse("campaign {\n  name: \"a\"\n  force_build: maybe\n}\n").unwrap_err();
        match &err {
            ConfigError::Parse { line, field, .. } => {
                assert_eq!(*line, 3);
                assert_eq!(field.as_deref(), Some("force_build"));
            }
            other => panic!("{other:?}"),
        }
        let err = parse("bugtracker { kind: sourceforge }").unwrap_err();
        assert!(err.to_string().contains("sourceforge"), "{err}");
    }
}
