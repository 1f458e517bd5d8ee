//! What each kind of credential holds, how its fields are checked, and how a hook gets it:
//! the environment variables and short-lived files the standard spawner scripts already read.
//!
//! Checks say what is wrong and how to fix it, and never quote a secret back.

use std::collections::BTreeMap;
use std::path::Path;

use app::api::credentials::{FormSpec, form_spec};
use app::error::FieldError;
use secrecy::{ExposeSecret, SecretString};

/// A form's input split by the kind's spec: the non-secret fields to store as they are, the
/// secret ones to seal.
pub struct Checked {
    pub fields: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, SecretString>,
}

/// The spec of a stored credential (OpenStack's auth type is kept in its fields).
pub fn spec_of(kind: &str, fields: &BTreeMap<String, String>) -> Option<FormSpec> {
    form_spec(kind, fields.get("auth_type").map(String::as_str))
}

/// The secret whose last four characters identify the credential.
pub fn main_secret(spec: &FormSpec) -> Option<&str> {
    spec.secret_fields().next().map(|f| f.name.as_str())
}

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Checks the fields a form posted for `spec`. With `secrets_only`, only the secret fields
/// are read (replacing a secret keeps the rest).
pub fn check(
    spec: &FormSpec,
    input: &BTreeMap<String, String>,
    stored: Option<&BTreeMap<String, String>>,
    secrets_only: bool,
) -> Result<Checked, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut fields = stored.cloned().unwrap_or_default();
    let mut secrets = BTreeMap::new();
    for f in &spec.fields {
        if secrets_only && !f.secret {
            continue;
        }
        let raw = input.get(&f.name).map(String::as_str).unwrap_or("");
        // Keys keep their line structure; everything else is one trimmed line.
        let value = if f.multiline {
            raw.trim().replace("\r\n", "\n")
        } else {
            raw.trim().to_string()
        };
        if value.is_empty() {
            errors.push(problem(
                &f.name,
                format!("Enter the {}.", f.label.to_lowercase()),
            ));
            continue;
        }
        if value.len() > 16 * 1024 {
            errors.push(problem(
                &f.name,
                "This is longer than 16 KiB; paste only the value asked for.",
            ));
            continue;
        }
        if f.secret {
            secrets.insert(f.name.clone(), SecretString::from(value));
        } else {
            fields.insert(f.name.clone(), value);
        }
    }
    if let Some(variant) = &spec.variant {
        fields.insert("auth_type".into(), variant.clone());
    }
    if errors.is_empty() {
        errors.extend(check_values(&spec.kind, &fields, &secrets, secrets_only));
    }
    if errors.is_empty() {
        Ok(Checked { fields, secrets })
    } else {
        Err(errors)
    }
}

/// The kind's own rules, once every required field is there.
fn check_values(
    kind: &str,
    fields: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretString>,
    secrets_only: bool,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let secret = |name: &str| secrets.get(name).map(|s| s.expose_secret()).unwrap_or("");
    let mut check = |name: &str, ok: Result<(), String>| {
        if let Err(message) = ok {
            errors.push(problem(name, message));
        }
    };
    match kind {
        "aws" => {
            if !secrets_only {
                check("access_key_id", aws_access_key_id(field("access_key_id")));
                check("region", aws_region(field("region")));
            }
            check("secret_access_key", aws_secret(secret("secret_access_key")));
        }
        "openstack" => {
            if !secrets_only {
                check("auth_url", keystone_url(field("auth_url")));
                check("region", plain_name("region", field("region"), 64));
                if field("auth_type") == "application_credential" {
                    let id = field("application_credential_id");
                    check(
                        "application_credential_id",
                        if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                            Ok(())
                        } else {
                            Err("An application credential ID is 32 hexadecimal characters, as `openstack application credential show` prints it.".into())
                        },
                    );
                } else {
                    for name in [
                        "username",
                        "project_name",
                        "user_domain_name",
                        "project_domain_name",
                    ] {
                        check(name, plain_name(name, field(name), 255));
                    }
                }
            }
            for name in ["application_credential_secret", "password"] {
                if secrets.contains_key(name) {
                    check(name, one_line_secret(secret(name)));
                }
            }
        }
        "ibmcloud" => {
            if !secrets_only {
                check("region", ibm_region(field("region")));
            }
            check("api_key", ibm_api_key(secret("api_key")));
        }
        "libvirt" => {
            if !secrets_only {
                match libvirt_uri(field("uri")) {
                    Ok((host, port)) => check(
                        "known_hosts",
                        known_hosts(field("known_hosts"), &host, port),
                    ),
                    Err(e) => errors.push(problem("uri", e)),
                }
            }
            match ssh_private_key(secret("ssh_private_key")) {
                Ok(_) => {}
                Err(e) => errors.push(problem("ssh_private_key", e)),
            }
        }
        _ => {}
    }
    errors
}

fn aws_access_key_id(v: &str) -> Result<(), String> {
    if v.starts_with("ASIA") {
        return Err("ASIA… keys are temporary (they need a session token and expire): create an access key of an IAM user, which starts with AKIA.".into());
    }
    if v.len() == 20
        && v.starts_with("AKIA")
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err("An access key ID is 20 capital letters and digits starting with AKIA, e.g. AKIAIOSFODNN7EXAMPLE.".into())
    }
}

fn aws_secret(v: &str) -> Result<(), String> {
    if v.len() == 40
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'+')
    {
        Ok(())
    } else {
        Err("A secret access key is 40 characters of letters, digits, '/' and '+'; copy it again from where the key was created.".into())
    }
}

fn aws_region(v: &str) -> Result<(), String> {
    let parts: Vec<&str> = v.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not an AWS region name; use one like us-east-1 or eu-central-1."
        ))
    }
}

fn ibm_region(v: &str) -> Result<(), String> {
    let ok = v.split_once('-').is_some_and(|(geo, place)| {
        geo.len() == 2
            && geo.bytes().all(|b| b.is_ascii_lowercase())
            && (2..=6).contains(&place.len())
            && place.bytes().all(|b| b.is_ascii_lowercase())
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not an IBM Cloud VPC region; use one like us-east, eu-de or br-sao."
        ))
    }
}

fn ibm_api_key(v: &str) -> Result<(), String> {
    if v.len() == 44
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err("An IBM Cloud API key is 44 characters of letters, digits, '-' and '_'; copy it again from where it was created.".into())
    }
}

fn keystone_url(v: &str) -> Result<(), String> {
    let url = url::Url::parse(v).map_err(|_| {
        format!("{v:?} is not a URL; use one like https://keystone.example.org:5000/v3.")
    })?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err("Use https://: with http:// the password or secret would cross the network in the clear.".into());
        }
        other => return Err(format!("An auth URL starts with https://, not {other}:.")),
    }
    if url.host_str().is_none() {
        return Err("The auth URL needs a host name.".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Leave the user and password out of the URL: they belong in their own fields, where the password is kept secret.".into());
    }
    Ok(())
}

fn plain_name(field: &str, v: &str, max: usize) -> Result<(), String> {
    if v.len() > max {
        return Err(format!(
            "Keep the {} under {max} characters.",
            field.replace('_', " ")
        ));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(format!(
            "The {} holds a control character; type it again.",
            field.replace('_', " ")
        ));
    }
    Ok(())
}

fn one_line_secret(v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_control()) {
        return Err(
            "This holds a line break or another control character; paste only the secret.".into(),
        );
    }
    Ok(())
}

/// The host and port of a `qemu+ssh://user@host[:port]/system` URI.
pub fn libvirt_uri(v: &str) -> Result<(String, u16), String> {
    let url = url::Url::parse(v)
        .map_err(|_| format!("{v:?} is not a URI; use qemu+ssh://user@host/system."))?;
    if url.scheme() != "qemu+ssh" {
        return Err(format!(
            "Use a qemu+ssh:// URI (this one is {}://): copr-pools reaches hypervisors over SSH with the key below.",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or("The URI needs the hypervisor's host name: qemu+ssh://user@host/system.")?;
    if url.username().is_empty() {
        return Err("Name the SSH user in the URI: qemu+ssh://user@host/system.".into());
    }
    if !matches!(url.path(), "/system" | "/session") {
        return Err("End the URI with /system (or /session).".into());
    }
    if url.query().is_some() || url.password().is_some() {
        return Err("Leave out ?parameters and passwords: copr-pools adds keyfile= and known_hosts= itself.".into());
    }
    Ok((host.to_string(), url.port().unwrap_or(22)))
}

/// Checks a `known_hosts` line: it names the URI's host (also in hashed form), its key type
/// is one SSH uses, and its key is base64.
fn known_hosts(line: &str, host: &str, port: u16) -> Result<(), String> {
    let lines: Vec<&str> = line
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    if lines.is_empty() {
        return Err(format!("Paste the line `ssh-keyscan {host}` prints."));
    }
    let wanted = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    for l in &lines {
        let mut parts = l.split_whitespace();
        let mut hosts = parts.next().unwrap_or("");
        if hosts.starts_with('@') {
            // @cert-authority / @revoked markers.
            hosts = parts.next().unwrap_or("");
        }
        let (Some(key_type), Some(key)) = (parts.next(), parts.next()) else {
            return Err(
                "A known_hosts line is `HOST KEYTYPE KEY`, as ssh-keyscan prints it.".into(),
            );
        };
        let known_type = matches!(
            key_type,
            "ssh-ed25519"
                | "ssh-rsa"
                | "ecdsa-sha2-nistp256"
                | "ecdsa-sha2-nistp384"
                | "ecdsa-sha2-nistp521"
                | "sk-ssh-ed25519@openssh.com"
                | "sk-ecdsa-sha2-nistp256@openssh.com"
        );
        if !known_type {
            return Err(format!(
                "{key_type:?} is not an SSH host key type; paste the line ssh-keyscan prints."
            ));
        }
        if base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key).is_err() {
            return Err(
                "The key part of the line is not base64; paste the whole line again.".into(),
            );
        }
        if hosts.split(',').any(|h| host_matches(h, &wanted)) {
            return Ok(());
        }
    }
    Err(format!(
        "No line names {wanted}, the host of the URI: hooks would refuse to connect. Paste the output of `ssh-keyscan{} {host}`.",
        if port == 22 {
            String::new()
        } else {
            format!(" -p {port}")
        }
    ))
}

/// A known_hosts host entry, plain or hashed (`|1|salt|hash`, HMAC-SHA1 of the name).
fn host_matches(entry: &str, wanted: &str) -> bool {
    let Some(hashed) = entry.strip_prefix("|1|") else {
        return entry.eq_ignore_ascii_case(wanted);
    };
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let b64 = &base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (
        base64::Engine::decode(b64, salt),
        base64::Engine::decode(b64, hash),
    ) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, wanted.as_bytes(), &hash).is_ok()
}

/// Checks an SSH private key parses and has no passphrase; returns the public key's
/// fingerprint when it can tell it (OpenSSH keys).
pub fn ssh_private_key(text: &str) -> Result<Option<String>, String> {
    let text = text.trim();
    let passphrase = "The key is protected by a passphrase, which hooks cannot type: remove it from a copy (ssh-keygen -p -N '' -f COPY) and paste that.";
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(passphrase.into());
    }
    if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = ssh_key::PrivateKey::from_openssh(text)
            .map_err(|_| "This OpenSSH key does not parse; paste the whole file, from -----BEGIN to -----END.".to_string())?;
        if key.is_encrypted() {
            return Err(passphrase.into());
        }
        return Ok(Some(
            key.public_key()
                .fingerprint(ssh_key::HashAlg::Sha256)
                .to_string(),
        ));
    }
    let (label, der) = pem_rfc7468::decode_vec(text.as_bytes()).map_err(|_| {
        "This is not a private key in OpenSSH or PEM form; paste the whole file, from -----BEGIN to -----END.".to_string()
    })?;
    let parses = match label {
        "ENCRYPTED PRIVATE KEY" => return Err(passphrase.into()),
        "RSA PRIVATE KEY" => pkcs1::RsaPrivateKey::try_from(der.as_slice()).is_ok(),
        "PRIVATE KEY" => pkcs8::PrivateKeyInfo::try_from(der.as_slice()).is_ok(),
        "EC PRIVATE KEY" => der::Document::try_from(der.as_slice()).is_ok(),
        other => {
            return Err(format!(
                "A {other} is not a private key; paste the private key (-----BEGIN … PRIVATE KEY-----)."
            ));
        }
    };
    if parses {
        Ok(None)
    } else {
        Err("This PEM key does not parse; paste the whole file again.".into())
    }
}

/// The last four characters of a secret (of a key: of its last line of base64).
pub fn last4(secret: &str) -> String {
    let body = secret
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("-----"))
        .unwrap_or(secret);
    let chars: Vec<char> = body.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

/// Files and variables that hand a credential to one hook. The files are written into `dir`
/// (which the caller made 0700 and removes when the hook ends), each 0600.
pub fn materialize(
    kind: &str,
    fields: &BTreeMap<String, String>,
    secrets: &BTreeMap<String, SecretString>,
    dir: &Path,
) -> std::io::Result<Vec<(String, String)>> {
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let secret = |name: &str| {
        secrets
            .get(name)
            .map(|s| s.expose_secret().to_string())
            .unwrap_or_default()
    };
    let path = |name: &str| dir.join(name).display().to_string();
    let mut env: Vec<(String, String)> = Vec::new();
    match kind {
        "aws" => {
            write_private(
                &dir.join("aws-credentials"),
                &format!(
                    "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                    field("access_key_id"),
                    secret("secret_access_key")
                ),
            )?;
            write_private(
                &dir.join("aws-config"),
                &format!("[default]\nregion = {}\noutput = json\n", field("region")),
            )?;
            env.extend([
                (
                    "AWS_SHARED_CREDENTIALS_FILE".into(),
                    path("aws-credentials"),
                ),
                ("AWS_CONFIG_FILE".into(), path("aws-config")),
                ("AWS_ACCESS_KEY_ID".into(), field("access_key_id")),
                ("AWS_SECRET_ACCESS_KEY".into(), secret("secret_access_key")),
                ("AWS_DEFAULT_REGION".into(), field("region")),
                ("AWS_REGION".into(), field("region")),
            ]);
        }
        "openstack" => {
            env.extend([
                ("OS_AUTH_URL".into(), field("auth_url")),
                ("OS_REGION_NAME".into(), field("region")),
                ("OS_IDENTITY_API_VERSION".into(), "3".into()),
                ("OS_INTERFACE".into(), "public".into()),
            ]);
            if field("auth_type") == "application_credential" {
                env.extend([
                    ("OS_AUTH_TYPE".into(), "v3applicationcredential".into()),
                    (
                        "OS_APPLICATION_CREDENTIAL_ID".into(),
                        field("application_credential_id"),
                    ),
                    (
                        "OS_APPLICATION_CREDENTIAL_SECRET".into(),
                        secret("application_credential_secret"),
                    ),
                ]);
            } else {
                env.extend([
                    ("OS_AUTH_TYPE".into(), "password".into()),
                    ("OS_USERNAME".into(), field("username")),
                    ("OS_PASSWORD".into(), secret("password")),
                    ("OS_PROJECT_NAME".into(), field("project_name")),
                    ("OS_USER_DOMAIN_NAME".into(), field("user_domain_name")),
                    (
                        "OS_PROJECT_DOMAIN_NAME".into(),
                        field("project_domain_name"),
                    ),
                ]);
            }
        }
        "ibmcloud" => {
            write_private(
                &dir.join("ibmcloud-token"),
                &format!("IBMCLOUD_API_KEY={}\n", secret("api_key")),
            )?;
            env.extend([
                ("IBMCLOUD_TOKEN_FILE".into(), path("ibmcloud-token")),
                ("IBMCLOUD_REGION".into(), field("region")),
            ]);
        }
        "libvirt" => {
            let mut key = secret("ssh_private_key");
            if !key.ends_with('\n') {
                key.push('\n');
            }
            write_private(&dir.join("libvirt-ssh-key"), &key)?;
            write_private(
                &dir.join("libvirt-known-hosts"),
                &format!("{}\n", field("known_hosts").trim_end()),
            )?;
            let mut uri = url::Url::parse(&field("uri")).map_err(std::io::Error::other)?;
            uri.query_pairs_mut()
                .append_pair("keyfile", &path("libvirt-ssh-key"))
                .append_pair("known_hosts", &path("libvirt-known-hosts"));
            env.extend([
                ("LIBVIRT_DEFAULT_URI".into(), uri.to_string()),
                ("LIBVIRT_URI".into(), field("uri")),
                ("LIBVIRT_SSH_KEY_FILE".into(), path("libvirt-ssh-key")),
                (
                    "LIBVIRT_KNOWN_HOSTS_FILE".into(),
                    path("libvirt-known-hosts"),
                ),
            ]);
        }
        _ => {}
    }
    Ok(env)
}

/// Writes a file only its owner can read (0600), failing if it exists.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn errors_of(kind: &str, variant: Option<&str>, pairs: &[(&str, &str)]) -> Vec<String> {
        let spec = form_spec(kind, variant).unwrap();
        match check(&spec, &input(pairs), None, false) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect(),
        }
    }

    /// A throwaway key made for these tests (ssh-keygen -t ed25519 -N '').
    pub const ED25519: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBCA67dYkbbWqs6A36dndI0NrB64yqMOQ5M2mJQ/s6wkAAAAJh3EdC0dxHQ
tAAAAAtzc2gtZWQyNTUxOQAAACBCA67dYkbbWqs6A36dndI0NrB64yqMOQ5M2mJQ/s6wkA
AAAEC3huHkZV27YzoAIvf7SEsz8NAotFgDUAmdMs+7Q1uBOkIDrt1iRttaqzoDfp2d0jQ2
sHrjKow5DkzaYlD+zrCQAAAAD3Rlc3RAY29wci1wb29scwECAwQFBg==
-----END OPENSSH PRIVATE KEY-----";

    #[test]
    fn aws_fields_are_checked_with_messages_that_say_how_to_fix_them() {
        let ok = [
            ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
            (
                "secret_access_key",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            ),
            ("region", "us-east-1"),
        ];
        assert!(errors_of("aws", None, &ok).is_empty());
        let e = errors_of(
            "aws",
            None,
            &[
                ("access_key_id", "AKIA123"),
                ("secret_access_key", "short"),
                ("region", "Virginia"),
            ],
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(
            e[0].contains("access_key_id") && e[0].contains("AKIA"),
            "{e:?}"
        );
        assert!(
            !e.iter().any(|m| m.contains("short")),
            "the secret is not quoted back"
        );
        let e = errors_of("aws", None, &[("access_key_id", "ASIAIOSFODNN7EXAMPLE")]);
        assert!(
            e.iter().any(|m| m.contains("Enter the secret access key")),
            "{e:?}"
        );
        let e = errors_of(
            "aws",
            None,
            &[
                ("access_key_id", "ASIAIOSFODNN7EXAMPLE"),
                (
                    "secret_access_key",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
                ("region", "eu-central-1"),
            ],
        );
        assert!(e[0].contains("temporary"), "{e:?}");
    }

    #[test]
    fn openstack_urls_and_ids_are_checked() {
        let e = errors_of(
            "openstack",
            Some("application_credential"),
            &[
                ("auth_url", "http://keystone.example.org:5000/v3"),
                ("region", "RegionOne"),
                ("application_credential_id", "abc"),
                ("application_credential_secret", "s"),
            ],
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("auth_url") && m.contains("https")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with("application_credential_id")),
            "{e:?}"
        );
        let e = errors_of(
            "openstack",
            Some("password"),
            &[
                ("auth_url", "https://keystone.example.org:5000/v3"),
                ("region", "RegionOne"),
                ("username", "copr"),
                ("password", "pw"),
                ("project_name", "copr"),
                ("user_domain_name", "Default"),
                ("project_domain_name", "Default"),
            ],
        );
        assert!(e.is_empty(), "{e:?}");
    }

    #[test]
    fn libvirt_needs_an_ssh_uri_an_unprotected_key_and_the_hosts_line() {
        let host_line = "vmhost.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEIDrt1iRttaqzoDfp2d0jQ2sHrjKow5DkzaYlD+zrCQ";
        let ok = [
            ("uri", "qemu+ssh://copr@vmhost.example.org/system"),
            ("ssh_private_key", ED25519),
            ("known_hosts", host_line),
        ];
        assert!(
            errors_of("libvirt", None, &ok).is_empty(),
            "{:?}",
            errors_of("libvirt", None, &ok)
        );
        let e = errors_of(
            "libvirt",
            None,
            &[
                ("uri", "qemu+ssh://copr@other.example.org/system"),
                ("ssh_private_key", ED25519),
                ("known_hosts", host_line),
            ],
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("known_hosts") && m.contains("other.example.org")),
            "{e:?}"
        );
        let e = errors_of(
            "libvirt",
            None,
            &[
                ("uri", "qemu:///system"),
                (
                    "ssh_private_key",
                    "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----",
                ),
                ("known_hosts", host_line),
            ],
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("uri") && m.contains("qemu+ssh")),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("ssh_private_key") && m.contains("does not parse")),
            "{e:?}"
        );
        let encrypted = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----";
        assert!(
            ssh_private_key(encrypted)
                .unwrap_err()
                .contains("passphrase")
        );
        assert!(
            ssh_private_key(
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----"
            )
            .unwrap_err()
            .contains("passphrase")
        );
        assert!(
            ssh_private_key(ED25519)
                .unwrap()
                .unwrap()
                .starts_with("SHA256:")
        );
        // A hashed known_hosts entry for the host, on another port.
        let salt = [1u8; 20];
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        let tag = ring::hmac::sign(&key, b"[vmhost.example.org]:2222");
        let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b);
        let hashed = format!(
            "|1|{}|{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
            b64(&salt),
            b64(tag.as_ref())
        );
        assert_eq!(known_hosts(&hashed, "vmhost.example.org", 2222), Ok(()));
        assert!(known_hosts(&hashed, "vmhost.example.org", 22).is_err());
    }

    #[test]
    fn hooks_get_the_variables_and_private_files_the_spawners_read() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let spec = form_spec("aws", None).unwrap();
        let checked = check(
            &spec,
            &input(&[
                ("access_key_id", "AKIAIOSFODNN7EXAMPLE"),
                (
                    "secret_access_key",
                    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ),
                ("region", "us-east-1"),
            ]),
            None,
            false,
        )
        .unwrap_or_else(|_| panic!("valid"));
        let env = materialize("aws", &checked.fields, &checked.secrets, dir.path()).unwrap();
        let env: BTreeMap<_, _> = env.into_iter().collect();
        assert_eq!(
            env["AWS_SECRET_ACCESS_KEY"],
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        let creds = std::fs::read_to_string(&env["AWS_SHARED_CREDENTIALS_FILE"]).unwrap();
        assert!(creds.starts_with("[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n"));
        let mode = std::fs::metadata(&env["AWS_SHARED_CREDENTIALS_FILE"])
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(last4("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "EKEY");
        assert_eq!(last4(ED25519), "Bg==");
    }
}
