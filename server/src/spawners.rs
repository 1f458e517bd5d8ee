//! Spawner templates: the `cmd_*` lines of a pool made from an approved request, one
//! template per credential kind. The built-in ones run the standard scripts
//! (`resalloc-aws-*`, `resalloc-openstack-*`, `resalloc-ibm-cloud-*`, Copr's libvirt ones,
//! and for `local` the demo spawner); admins replace any command in `spawner_templates`.
//!
//! Placeholders name the request's cloud parameters: `{instance_type}`, `{image}` (the
//! image of the pool's architecture), `{subnets}`, …, plus `{arch}`, `{pool}` and
//! `{spawners}`. `{each:NAME:--option}` repeats `--option VALUE` for every comma-separated
//! value of NAME (`{each:NAME:}` lists the values). Every value is shell-quoted: the
//! parameters come from a form, the line runs in `sh -c`. Credentials never appear here;
//! hooks get them in their environment (`$AWS_DEFAULT_REGION`, `$IBMCLOUD_TOKEN_FILE`, …).

use std::collections::BTreeMap;

use crate::config::TemplateOverride;

/// A kind's commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub cmd_new: String,
    pub cmd_delete: String,
    pub cmd_list: Option<String>,
    pub cmd_livecheck: Option<String>,
}

/// Names every template may use besides the kind's parameters.
const ALWAYS: &[&str] = &["arch", "pool", "spawners", "image"];

/// The built-in template of a kind.
pub fn builtin(kind: &str) -> Option<Template> {
    let t = |new: &str, delete: &str, list: Option<&str>, check: Option<&str>| Template {
        cmd_new: new.into(),
        cmd_delete: delete.into(),
        cmd_list: list.map(str::to_string),
        cmd_livecheck: check.map(str::to_string),
    };
    Some(match kind {
        "aws" => t(
            "resalloc-aws-new --aws-profile default --region \"$AWS_DEFAULT_REGION\" \
             --instance-type {instance_type} --ami {image} --ssh-key-name {ssh_key} \
             --security-group-id {security_group} {each:subnets:--possible-subnet} \
             --additional-volume-size {volume_size} --tag FedoraGroup=copr --tag CoprPool={pool}",
            "resalloc-aws-delete --aws-profile default --region \"$AWS_DEFAULT_REGION\"",
            Some("resalloc-aws-list --aws-profile default --region \"$AWS_DEFAULT_REGION\""),
            Some("resalloc-check-vm-ip"),
        ),
        "openstack" => t(
            "resalloc-openstack-new --name \"$RESALLOC_NAME\" --flavor {flavor} --image {image} \
             --key-pair-id {ssh_key} --nic net-id={network} --security-group {security_group} \
             --alloc-volume {volume_size} --print-ip",
            "resalloc-openstack-delete --delete-everything \"$RESALLOC_NAME\"",
            Some("resalloc-openstack-list"),
            Some("resalloc-check-vm-ip"),
        ),
        "ibmcloud" => t(
            "resalloc-ibm-cloud-vm --token-file \"$IBMCLOUD_TOKEN_FILE\" --region \"$IBMCLOUD_REGION\" \
             create \"$RESALLOC_NAME\" --playbook /var/lib/resallocserver/provision/builder.yml \
             --image-uuid {image} --vpc-id {vpc} --security-group-id {security_group} \
             --ssh-key-id {ssh_key} --instance-type {instance_type} --subnets-ids {each:subnets:} \
             --additional-volume-size {volume_size}",
            "resalloc-ibm-cloud-vm --token-file \"$IBMCLOUD_TOKEN_FILE\" --region \"$IBMCLOUD_REGION\" \
             delete \"$RESALLOC_NAME\"",
            Some(
                "resalloc-ibm-cloud-list-vms --token-file \"$IBMCLOUD_TOKEN_FILE\" --region \"$IBMCLOUD_REGION\"",
            ),
            Some("resalloc-check-vm-ip"),
        ),
        "libvirt" => t(
            "libvirt-new --ram-size {ram_mb} --cpu-count {cpus} --swap-vol-size {volume_size}",
            "libvirt-delete --connection \"$LIBVIRT_DEFAULT_URI\" \"$RESALLOC_NAME\"",
            Some("libvirt-list --connection \"$LIBVIRT_DEFAULT_URI\""),
            None,
        ),
        "local" => t(
            "{spawners}/local-new",
            "{spawners}/local-delete",
            None,
            None,
        ),
        _ => return None,
    })
}

/// The template of a kind: the built-in one with the admins' replacements.
pub fn template(kind: &str, overrides: &BTreeMap<String, TemplateOverride>) -> Option<Template> {
    let mut t = builtin(kind)?;
    if let Some(o) = overrides.get(kind) {
        if let Some(c) = &o.cmd_new {
            t.cmd_new = c.clone();
        }
        if let Some(c) = &o.cmd_delete {
            t.cmd_delete = c.clone();
        }
        if let Some(c) = &o.cmd_list {
            t.cmd_list = Some(c.clone()).filter(|c| !c.trim().is_empty());
        }
        if let Some(c) = &o.cmd_livecheck {
            t.cmd_livecheck = Some(c.clone()).filter(|c| !c.trim().is_empty());
        }
    }
    Some(t)
}

/// The placeholders of a command line, as (name, option for `each`).
fn placeholders(line: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{line:?} has a '{{' without its '}}'"))?;
        let inside = &after[..close];
        match inside.strip_prefix("each:") {
            Some(each) => {
                let (name, option) = each
                    .split_once(':')
                    .ok_or_else(|| format!("{{each:{each}}} must be {{each:NAME:--option}}"))?;
                out.push((name.to_string(), Some(option.to_string())));
            }
            None => out.push((inside.to_string(), None)),
        }
        rest = &after[close + 1..];
    }
    Ok(out)
}

/// Checks the admins' templates at startup: known kinds, placeholders the kind can fill.
pub fn check_overrides(overrides: &BTreeMap<String, TemplateOverride>) -> Result<(), String> {
    for (kind, o) in overrides {
        if builtin(kind).is_none() {
            return Err(format!(
                "{kind:?} is not a kind of credential; use aws, openstack, ibmcloud, libvirt or local"
            ));
        }
        let known: Vec<String> = app::api::requests::param_specs(kind, &[])
            .into_iter()
            .map(|f| f.name)
            .collect();
        for line in [&o.cmd_new, &o.cmd_delete, &o.cmd_list, &o.cmd_livecheck]
            .into_iter()
            .flatten()
        {
            for (name, _) in placeholders(line)? {
                if !ALWAYS.contains(&name.as_str()) && !known.contains(&name) {
                    return Err(format!(
                        "{kind}: {{{name}}} is not a parameter of {kind} requests; use {}",
                        ALWAYS
                            .iter()
                            .map(|s| s.to_string())
                            .chain(known.iter().cloned())
                            .map(|n| format!("{{{n}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Quotes a value for `sh`.
pub fn shell_quote(value: &str) -> String {
    if !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+".contains(&b))
    {
        return value.to_string();
    }
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// Fills a command line's placeholders from `values`, every value shell-quoted. A
/// placeholder without a value is an error that names it.
pub fn render(line: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("{line:?} has a '{{' without its '}}'"))?;
        let inside = &after[..close];
        let missing = |name: &str| format!("the template needs {{{name}}}, which has no value");
        match inside.strip_prefix("each:") {
            Some(each) => {
                let (name, option) = each
                    .split_once(':')
                    .ok_or_else(|| format!("{{each:{each}}} must be {{each:NAME:--option}}"))?;
                let list = values.get(name).ok_or_else(|| missing(name))?;
                let parts: Vec<String> = list
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| {
                        if option.is_empty() {
                            shell_quote(v)
                        } else {
                            format!("{option} {}", shell_quote(v))
                        }
                    })
                    .collect();
                out.push_str(&parts.join(" "));
            }
            None => {
                let value = values.get(inside).ok_or_else(|| missing(inside))?;
                out.push_str(&shell_quote(value));
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn templates_fill_every_parameter_quoted_for_the_shell() {
        let t = builtin("aws").unwrap();
        let line = render(
            &t.cmd_new,
            &values(&[
                ("instance_type", "c7i.xlarge"),
                ("image", "ami-0123"),
                ("ssh_key", "copr builder"),
                ("security_group", "sg-1"),
                ("subnets", "subnet-a, subnet-b"),
                ("volume_size", "160"),
                ("pool", "llvm-x86_64"),
            ]),
        )
        .unwrap();
        assert!(
            line.contains("--instance-type c7i.xlarge --ami ami-0123"),
            "{line}"
        );
        assert!(line.contains("--ssh-key-name 'copr builder'"), "{line}");
        assert!(
            line.contains("--possible-subnet subnet-a --possible-subnet subnet-b"),
            "{line}"
        );
        assert!(line.contains("--region \"$AWS_DEFAULT_REGION\""), "{line}");
        let e = render(&t.cmd_new, &values(&[])).unwrap_err();
        assert!(e.contains("{instance_type}"), "{e}");
        assert_eq!(shell_quote("a'b; rm -rf /"), "'a'\\''b; rm -rf /'");
    }

    #[test]
    fn admins_replace_commands_with_known_placeholders_only() {
        let mut o = BTreeMap::new();
        o.insert(
            "aws".to_string(),
            TemplateOverride {
                cmd_new: Some("my-spawner {instance_type} {image} {arch}".into()),
                ..Default::default()
            },
        );
        check_overrides(&o).unwrap();
        assert_eq!(
            template("aws", &o).unwrap().cmd_new,
            "my-spawner {instance_type} {image} {arch}"
        );
        o.get_mut("aws").unwrap().cmd_new = Some("x {flavour}".into());
        assert!(check_overrides(&o).unwrap_err().contains("{flavour}"));
        let mut bad = BTreeMap::new();
        bad.insert("gce".to_string(), TemplateOverride::default());
        assert!(check_overrides(&bad).unwrap_err().contains("gce"));
    }
}
