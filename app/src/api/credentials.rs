//! Teams' cloud credentials as the browser sees them: which kinds exist and what each form
//! asks for, a credential's non-secret description, and the server functions behind the
//! credential pages. Secrets travel one way only, in a form post to the server; nothing here
//! ever carries one back.

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{AppError, FieldError};

/// One input of a credential form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// The form field's name, also the key in the stored fields.
    pub name: String,
    pub label: String,
    /// Sealed at rest, never shown again, never kept in a failed form.
    pub secret: bool,
    /// A multi-line input (keys, known-hosts lines).
    pub multiline: bool,
    pub help: String,
    pub placeholder: String,
    /// Prefilled when the form first shows.
    pub default: String,
}

/// The form of one kind of credential (OpenStack has two: application credential or
/// password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormSpec {
    /// `aws`, `openstack`, `ibmcloud`, `libvirt`, `local`.
    pub kind: String,
    /// OpenStack's auth type: `application_credential` or `password`.
    pub variant: Option<String>,
    pub title: String,
    /// What this credential is for and where to get its values.
    pub intro: String,
    pub fields: Vec<FieldSpec>,
}

impl FormSpec {
    pub fn secret_fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.fields.iter().filter(|f| f.secret)
    }
}

fn field(
    name: &str,
    label: &str,
    secret: bool,
    help: &str,
    placeholder: &str,
    default: &str,
) -> FieldSpec {
    FieldSpec {
        name: name.into(),
        label: label.into(),
        secret,
        multiline: false,
        help: help.into(),
        placeholder: placeholder.into(),
        default: default.into(),
    }
}

fn multiline(mut f: FieldSpec) -> FieldSpec {
    f.multiline = true;
    f
}

/// Every form, in the order the "add a credential" page offers them. `local` is offered only
/// where the server enables the demo spawners.
pub fn form_specs(demo_spawners: bool) -> Vec<FormSpec> {
    let mut specs = vec![
        form_spec("aws", None),
        form_spec("openstack", Some("application_credential")),
        form_spec("openstack", Some("password")),
        form_spec("ibmcloud", None),
        form_spec("libvirt", None),
    ];
    if demo_spawners {
        specs.push(form_spec("local", None));
    }
    specs.into_iter().flatten().collect()
}

/// The form of a kind (and OpenStack auth type), if there is one.
pub fn form_spec(kind: &str, variant: Option<&str>) -> Option<FormSpec> {
    let spec = |title: &str, intro: &str, fields: Vec<FieldSpec>| FormSpec {
        kind: kind.into(),
        variant: variant.map(str::to_string),
        title: title.into(),
        intro: intro.into(),
        fields,
    };
    let openstack_common = || {
        vec![
            field(
                "auth_url",
                "Auth URL",
                false,
                "The Keystone v3 endpoint (OS_AUTH_URL), e.g. https://keystone.example.org:5000/v3.",
                "https://keystone.example.org:5000/v3",
                "",
            ),
            field(
                "region",
                "Region",
                false,
                "OS_REGION_NAME, e.g. RegionOne.",
                "RegionOne",
                "",
            ),
        ]
    };
    Some(match (kind, variant) {
        ("aws", None) => spec(
            "Amazon Web Services",
            "An access key of an IAM user allowed to run, tag, describe and terminate EC2 instances. Hooks get it as the [default] profile of a temporary AWS config and as AWS_* variables.",
            vec![
                field(
                    "access_key_id",
                    "Access key ID",
                    false,
                    "20 characters starting with AKIA.",
                    "AKIAIOSFODNN7EXAMPLE",
                    "",
                ),
                field(
                    "secret_access_key",
                    "Secret access key",
                    true,
                    "40 characters, shown once when the key is created in the IAM console.",
                    "",
                    "",
                ),
                field(
                    "region",
                    "Default region",
                    false,
                    "Where the builders run, e.g. us-east-1.",
                    "us-east-1",
                    "",
                ),
            ],
        ),
        ("openstack", Some("application_credential")) => spec(
            "OpenStack: application credential",
            "An application credential of your project (openstack application credential create). Hooks get the OS_* variables resalloc-openstack reads.",
            [
                openstack_common(),
                vec![
                    field(
                        "application_credential_id",
                        "Application credential ID",
                        false,
                        "The 32 hexadecimal characters of its id.",
                        "",
                        "",
                    ),
                    field(
                        "application_credential_secret",
                        "Application credential secret",
                        true,
                        "Shown once when the application credential is created.",
                        "",
                        "",
                    ),
                ],
            ]
            .concat(),
        ),
        ("openstack", Some("password")) => spec(
            "OpenStack: password (v3)",
            "A user's password with Keystone v3. Prefer an application credential where your cloud offers them: it can be revoked without changing the password.",
            [
                openstack_common(),
                vec![
                    field("username", "Username", false, "OS_USERNAME.", "", ""),
                    field("password", "Password", true, "OS_PASSWORD.", "", ""),
                    field(
                        "project_name",
                        "Project name",
                        false,
                        "OS_PROJECT_NAME: the project the builders run in.",
                        "",
                        "",
                    ),
                    field(
                        "user_domain_name",
                        "User domain",
                        false,
                        "OS_USER_DOMAIN_NAME.",
                        "",
                        "Default",
                    ),
                    field(
                        "project_domain_name",
                        "Project domain",
                        false,
                        "OS_PROJECT_DOMAIN_NAME.",
                        "",
                        "Default",
                    ),
                ],
            ]
            .concat(),
        ),
        ("ibmcloud", None) => spec(
            "IBM Cloud",
            "An API key of a service ID allowed to manage VPC instances. Hooks get a temporary token file for resalloc-ibm-cloud's --token-file.",
            vec![
                field(
                    "api_key",
                    "API key",
                    true,
                    "44 characters, shown once when the key is created.",
                    "",
                    "",
                ),
                field(
                    "region",
                    "Region",
                    false,
                    "The VPC region, e.g. us-east or eu-es.",
                    "us-east",
                    "",
                ),
            ],
        ),
        ("libvirt", None) => spec(
            "libvirt over SSH",
            "A hypervisor reached as qemu+ssh://user@host/system. Hooks get the key and the host's known-hosts line as temporary files, and LIBVIRT_DEFAULT_URI pointing at them.",
            vec![
                field(
                    "uri",
                    "Connection URI",
                    false,
                    "qemu+ssh://user@host/system (a port as host:2222).",
                    "qemu+ssh://copr@vmhost.example.org/system",
                    "",
                ),
                multiline(field(
                    "ssh_private_key",
                    "SSH private key",
                    true,
                    "The whole key, OpenSSH or PEM, without a passphrase (remove one with ssh-keygen -p -N '' -f KEY).",
                    "-----BEGIN OPENSSH PRIVATE KEY-----",
                    "",
                )),
                multiline(field(
                    "known_hosts",
                    "Host key (known_hosts line)",
                    false,
                    "The hypervisor's line from ssh-keyscan HOST, so hooks connect only to that host.",
                    "vmhost.example.org ssh-ed25519 AAAA…",
                    "",
                )),
            ],
        ),
        ("local", None) => spec(
            "Local demo",
            "No cloud: the demo spawner prints an address of this machine. For trying copr-pools out; it starts nothing real.",
            Vec::new(),
        ),
        _ => return None,
    })
}

/// A kind's name as people read it.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "aws" => "AWS",
        "openstack" => "OpenStack",
        "ibmcloud" => "IBM Cloud",
        "libvirt" => "libvirt",
        "local" => "Local demo",
        _ => "Unknown",
    }
}

/// A credential, without its secret: what the team page and the credential page show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialView {
    pub id: i32,
    pub team: String,
    pub kind: String,
    pub variant: Option<String>,
    pub name: String,
    /// The non-secret fields, as (label, value).
    pub fields: Vec<(String, String)>,
    /// A keyed hash of the secret, e.g. `ab12:cd34:ef56:7890`.
    pub fingerprint: String,
    /// The last four characters of the main secret.
    pub last4: String,
    pub created_by: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub secret_replaced_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
    /// Pools that use it.
    pub pools: Vec<String>,
    /// Set when the configured keys cannot open its secret.
    pub unreadable: Option<String>,
    /// Revoked, yet its secret is kept to delete the machines started with it.
    pub secret_kept: bool,
}

/// What a form that came back from the server carries: what was typed (never a secret), the
/// errors by field, and a notice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormState {
    pub values: BTreeMap<String, String>,
    pub errors: Vec<FieldError>,
    /// Secrets were typed and have been cleared: the form says so.
    pub secrets_cleared: bool,
}

impl FormState {
    /// What a form sent, to show again (the CSRF token is not kept).
    pub fn keeping(values: BTreeMap<String, String>) -> FormState {
        FormState {
            values: values
                .into_iter()
                .filter(|(k, _)| k != "csrf_token")
                .collect(),
            ..FormState::default()
        }
    }

    pub fn error(&self, field: &str) -> Option<String> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.message.clone())
    }
}

/// The "add a credential" page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCredentialPage {
    pub team: String,
    /// The token the form posts back.
    pub csrf_token: String,
    /// The forms on offer.
    pub forms: Vec<FormSpec>,
    /// The chosen form, with what came back from a failed submission.
    pub chosen: Option<FormSpec>,
    pub state: FormState,
}

/// A credential's page: its description, and the outcome of the last form posted on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialPage {
    pub credential: CredentialView,
    /// The token the forms post back.
    pub csrf_token: String,
    /// The fields a replacement asks for (the kind's secret fields).
    pub replace: FormSpec,
    /// Which form the state belongs to: `rename`, `secret` or `revoke`.
    pub form: Option<String>,
    pub state: FormState,
    /// What the last successful action did.
    pub notice: Option<String>,
}

/// The server side of the credential pages. Every method authorizes: team members and admins.
#[cfg(feature = "ssr")]
#[async_trait::async_trait]
pub trait CredentialsBackend: Send + Sync + 'static {
    async fn list(&self, team: String) -> Result<Vec<CredentialView>, AppError>;
    async fn new_page(
        &self,
        team: String,
        kind: Option<String>,
        variant: Option<String>,
    ) -> Result<NewCredentialPage, AppError>;
    async fn page(&self, team: String, id: i32) -> Result<CredentialPage, AppError>;
}

#[cfg(feature = "ssr")]
fn credentials_backend() -> Result<std::sync::Arc<dyn CredentialsBackend>, AppError> {
    use_context::<std::sync::Arc<dyn CredentialsBackend>>().ok_or_else(|| {
        leptos::logging::error!("no CredentialsBackend in the Leptos context");
        AppError::Internal
    })
}

/// A team's credentials, for its members and admins.
#[server(prefix = "/api/ui", endpoint = "credentials")]
pub async fn get_credentials(team: String) -> Result<Vec<CredentialView>, AppError> {
    super::answer(match credentials_backend() {
        Ok(b) => b.list(team).await,
        Err(e) => Err(e),
    })
}

/// The "add a credential" page.
#[server(prefix = "/api/ui", endpoint = "new_credential")]
pub async fn get_new_credential(
    team: String,
    kind: Option<String>,
    variant: Option<String>,
) -> Result<NewCredentialPage, AppError> {
    super::answer(match credentials_backend() {
        Ok(b) => b.new_page(team, kind, variant).await,
        Err(e) => Err(e),
    })
}

/// A credential's page.
#[server(prefix = "/api/ui", endpoint = "credential")]
pub async fn get_credential(team: String, id: i32) -> Result<CredentialPage, AppError> {
    super::answer(match credentials_backend() {
        Ok(b) => b.page(team, id).await,
        Err(e) => Err(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_form_has_a_secret_but_the_demo() {
        for spec in form_specs(true) {
            assert_eq!(
                spec.secret_fields().count() == 0,
                spec.kind == "local",
                "{}",
                spec.title
            );
            let mut names: Vec<_> = spec.fields.iter().map(|f| &f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                spec.fields.len(),
                "{}: duplicate fields",
                spec.title
            );
        }
        assert!(form_specs(false).iter().all(|s| s.kind != "local"));
        assert!(form_spec("openstack", None).is_none());
    }
}
