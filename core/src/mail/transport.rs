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
        std::fs::create_dir_all(&dir)?;
        let temporary = dir.join(format!(".{name}.partial"));
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, dir.join(&name))
    })
    .await
    .map_err(|e| SendError::Transient(format!("the file writer stopped: {e}")))?
    .map_err(|e| SendError::Transient(format!("cannot write to the outbox directory: {e}")))
}
