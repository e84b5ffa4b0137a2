//! Where composed mail goes: an SMTP relay (lettre, pooled), or `.eml` files.

use std::path::PathBuf;
use std::time::Duration;

use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{Config, SmtpTls};

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth another attempt later (the relay is down, busy, or said 4xx).
    Transient(String),
    /// Never going to work: the relay refused with 5xx (a bounce), or the message
    /// cannot be built. The text is the relay's reply.
    Permanent(String),
}

/// The configured way out.
#[derive(Clone)]
pub enum Transport {
    /// Each message as `{dir}/{outbox id}-{message id}.eml` (the embedded default).
    Files { dir: PathBuf },
    Smtp {
        relay: AsyncSmtpTransport<Tokio1Executor>,
        description: String,
    },
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Transport {
    /// The transport `config` asks for: SMTP when `mail.smtp_host` is set, files
    /// otherwise.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let m = &config.mail;
        if m.smtp_host.is_empty() {
            return Ok(Self::Files {
                dir: config.outbox_dir(),
            });
        }
        let port = match (m.smtp_port, m.smtp_tls) {
            (0, SmtpTls::Starttls) => 587,
            (0, SmtpTls::Tls) => 465,
            (0, SmtpTls::None) => 25,
            (port, _) => port,
        };
        let tls = if m.smtp_tls == SmtpTls::None {
            Tls::None
        } else {
            let mut params = TlsParameters::builder(m.smtp_host.clone());
            if !m.smtp_ca_file.is_empty() {
                let pem = std::fs::read(&m.smtp_ca_file)
                    .map_err(|e| format!("mail.smtp_ca_file {}: {e}", m.smtp_ca_file))?;
                let certificate = Certificate::from_pem(&pem).map_err(|e| {
                    format!(
                        "mail.smtp_ca_file {} holds no PEM certificate: {e}",
                        m.smtp_ca_file
                    )
                })?;
                params = params.add_root_certificate(certificate);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("cannot set up TLS for {}: {e}", m.smtp_host))?;
            match m.smtp_tls {
                SmtpTls::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&m.smtp_host)
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(u64::from(m.smtp_timeout_secs))))
            .pool_config(PoolConfig::new().max_size(m.smtp_pool_size));
        if !m.smtp_username.is_empty() {
            builder = builder.credentials(Credentials::new(
                m.smtp_username.clone(),
                m.smtp_password.clone(),
            ));
        }
        let tls_name = match m.smtp_tls {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "no tls",
        };
        Ok(Self::Smtp {
            relay: builder.build(),
            description: format!("smtp://{}:{port} ({tls_name})", m.smtp_host),
        })
    }

    /// Where mail goes, for logs and `confab mail status`.
    pub fn describe(&self) -> String {
        match self {
            Self::Files { dir } => format!("files in {}", dir.display()),
            Self::Smtp { description, .. } => description.clone(),
        }
    }

    /// Delivers one message. Sending the same outbox row again (after a crash
    /// between delivery and its record) writes the same file again, or hands the
    /// relay a message with the same `Message-ID`.
    pub async fn send(&self, id: i64, message: &Message) -> Result<(), SendError> {
        match self {
            Self::Files { dir } => write_file(dir.clone(), id, message).await,
            Self::Smtp { relay, .. } => match relay.send(message.clone()).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(SendError::Permanent(e.to_string())),
                Err(e) => Err(SendError::Transient(e.to_string())),
            },
        }
    }
}

/// A file name from the `Message-ID`'s local part, which the outbox made of
/// letters and digits.
fn file_name(id: i64, message: &Message) -> String {
    let token: String = message
        .headers()
        .get_raw("Message-ID")
        .unwrap_or_default()
        .trim_matches(['<', '>'])
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{id:08}-{token}.eml")
}

async fn write_file(dir: PathBuf, id: i64, message: &Message) -> Result<(), SendError> {
    let name = file_name(id, message);
    let bytes = message.formatted();
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        // Messages carry links with their secrets: only the server's user may read them.
        private_dir(&dir)?;
        let temporary = dir.join(format!(".{name}.partial"));
        let mut file = private_file(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(&name))
    })
    .await
    .map_err(|e| SendError::Transient(format!("the file writer stopped: {e}")))?
    .map_err(|e| SendError::Transient(format!("cannot write to the outbox directory: {e}")))
}

/// Creates `dir` (and its parents) if missing and makes it readable by this user
/// only (0700 on Unix).
fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates (or truncates) `path` readable and writable by this user only (0600 on Unix).
fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

/// Deletes the outbox's `.eml` files last written before `cutoff` (with the rest of
/// the call metadata, after `privacy.retention_days`); returns how many.
pub fn delete_outbox_files_before(
    dir: &std::path::Path,
    cutoff: std::time::SystemTime,
) -> std::io::Result<u64> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "eml") {
            continue;
        }
        let metadata = entry.metadata()?;
        if metadata.is_file() && metadata.modified()? < cutoff {
            std::fs::remove_file(&path)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
