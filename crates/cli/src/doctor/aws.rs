//! The AWS side of the doctor: what the deployment's Lambdas need exists and answers.
//!
//! Every call is a read (Get/Describe), never a change. A failure says what was
//! looked for and what AWS answered (its error code), and how to fix it: which
//! Terraform output or variable, which command, or which IAM action the
//! caller lacks. Secret parameters are read without decryption and their
//! values are never shown.

use super::report::Check;
use aws_config::SdkConfig;
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use futures::future::join_all;
use spotrunner_aws::runtime::EnvSource;
use spotrunner_core::Config;
use spotrunner_core::config::{AppId, ConfigError, GitHubAuth, Pool, SecretRef};
use std::collections::BTreeMap;

/// The id of the configuration parameter's check.
pub const CONFIG_PARAMETER: &str = "aws.config_parameter";

/// How the operator gets the CLI's resource variables (Terraform output).
const EXPORT_ENV: &str =
    "export them from Terraform: eval \"$(terraform output -raw cli_environment)\"";

/// The resource variables the CLI's AWS backend reads (`adapters::aws`).
const JOBS_QUEUE_ENV: &str = "SPOTRUNNER_JOBS_QUEUE_URL";
const BOOTSTRAP_QUEUE_ENV: &str = "SPOTRUNNER_BOOTSTRAP_QUEUE_URL";
const LEDGER_TABLE_ENV: &str = "SPOTRUNNER_LEDGER_TABLE";
const DLQ_ENV: &str = "SPOTRUNNER_DLQ_URL";
const SSM_DOCUMENT_ENV: &str = "SPOTRUNNER_SSM_DOCUMENT";

/// The ledger's key (`spotrunner_aws::dynamodb`: one string hash key `pk`).
const LEDGER_KEY: &str = "pk";

/// Read and validate the deployed configuration document (SSM parameter `parameter`).
pub async fn load_config(sdk: &SdkConfig, parameter: &str) -> (Check, Option<Config>) {
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let what = format!("SSM parameter {parameter}");
    let answer = ssm
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let fix = "terraform apply (output config_parameter names it), and pass that name as --config-parameter";
            let problem = Refusal::of(&e).problem(
                &what,
                "ssm:GetParameter (and kms:Decrypt if it is a SecureString)",
                fix,
            );
            return (problem.fail(CONFIG_PARAMETER), None);
        }
    };
    let Some(text) = out.parameter().and_then(|p| p.value()) else {
        return (
            Check::fail(
                CONFIG_PARAMETER,
                format!("{what}: AWS answered without a value"),
                "terraform apply writes the document again",
            ),
            None,
        );
    };
    let version = out.parameter().map(|p| p.version()).unwrap_or_default();
    match Config::from_json(text).and_then(|c| c.validate_for_aws().map(|()| c)) {
        Ok(config) => (
            Check::pass(
                CONFIG_PARAMETER,
                format!(
                    "{what} (version {version}): deployment {}, {} pool(s)",
                    config.deployment,
                    config.pools.len()
                ),
            ),
            Some(config),
        ),
        Err(e) => (
            Check::fail(
                CONFIG_PARAMETER,
                format!("{what} (version {version}): {}", redacted(e)),
                "correct the field named above: Terraform renders the document from its variables (pools, github_*, …), \
                 so fix them and terraform apply; `spotrunner config check FILE` checks a copy first",
            ),
            None,
        ),
    }
}

/// Every AWS resource `config` and the environment name.
pub async fn checks(sdk: &SdkConfig, config: &Config, env: &dyn EnvSource) -> Vec<Check> {
    let names = Resources::read(config, env);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let ec2 = aws_sdk_ec2::Client::new(sdk);
    let iam = aws_sdk_iam::Client::new(sdk);

    let queues = [
        ("jobs", names.jobs_queue.as_deref()),
        ("bootstrap", names.bootstrap_queue.as_deref()),
        ("dlq", names.dlq.as_deref()),
    ];
    let (queues, ledger, document, (templates, profile), subnets, secrets) = tokio::join!(
        join_all(
            queues
                .iter()
                .filter_map(|(q, url)| url.map(|url| queue(&sqs, q, url)))
        ),
        async {
            match &names.ledger_table {
                Some(table) => Some(ledger(&dynamodb, table).await),
                None => None,
            }
        },
        document(&ssm, &names.document, names.document_default),
        templates_and_profile(&ec2, &iam, config),
        join_all(
            config
                .pools
                .iter()
                .enumerate()
                .map(|(i, p)| pool_subnets(&ec2, i, p))
        ),
        join_all(
            secret_refs(config)
                .into_iter()
                .map(|(field, r)| secret(&ssm, field, r))
        ),
    );
    let mut out = vec![names.check()];
    out.extend(queues);
    out.extend(ledger);
    out.push(document);
    out.extend(templates);
    out.extend(subnets);
    out.push(profile);
    out.extend(secrets);
    out
}

/// The names of the resources the CLI's AWS backend uses, from the environment.
struct Resources {
    jobs_queue: Option<String>,
    bootstrap_queue: Option<String>,
    ledger_table: Option<String>,
    dlq: Option<String>,
    document: String,
    /// Whether `document` is the default (no `SPOTRUNNER_SSM_DOCUMENT`).
    document_default: bool,
}

impl Resources {
    fn read(config: &Config, env: &dyn EnvSource) -> Self {
        let get = |name: &str| env.get(name).filter(|v| !v.trim().is_empty());
        let document = get(SSM_DOCUMENT_ENV);
        Self {
            jobs_queue: get(JOBS_QUEUE_ENV),
            bootstrap_queue: get(BOOTSTRAP_QUEUE_ENV),
            ledger_table: get(LEDGER_TABLE_ENV),
            dlq: get(DLQ_ENV),
            document_default: document.is_none(),
            document: document
                .unwrap_or_else(|| crate::adapters::default_ssm_document(&config.deployment)),
        }
    }

    /// `aws.environment`.
    fn check(&self) -> Check {
        const ID: &str = "aws.environment";
        let missing: Vec<&str> = [
            (JOBS_QUEUE_ENV, &self.jobs_queue),
            (BOOTSTRAP_QUEUE_ENV, &self.bootstrap_queue),
            (LEDGER_TABLE_ENV, &self.ledger_table),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| name)
        .collect();
        let document = if self.document_default {
            format!(
                "SSM document {} ({SSM_DOCUMENT_ENV} unset: the default)",
                self.document
            )
        } else {
            format!("SSM document {}", self.document)
        };
        if !missing.is_empty() {
            return Check::fail(
                ID,
                format!(
                    "{} not set: the CLI's AWS backend requires it (what it names is not checked)",
                    missing.join(", ")
                ),
                EXPORT_ENV,
            );
        }
        if self.dlq.is_none() {
            return Check::warn(
                ID,
                format!(
                    "queues and ledger table set, {document}; {DLQ_ENV} not set: status and redrive cannot see the dead-letter queue"
                ),
                EXPORT_ENV,
            );
        }
        Check::pass(
            ID,
            format!(
                "jobs, bootstrap and dead-letter queues, ledger table {}, {document}",
                self.ledger_table.as_deref().unwrap_or_default()
            ),
        )
    }
}

/// `aws.queue.<name>`: the queue answers; its depth.
async fn queue(sqs: &aws_sdk_sqs::Client, name: &str, url: &str) -> Check {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let id = format!("aws.queue.{name}");
    let label = if name == "dlq" { "dead-letter" } else { name };
    let what = format!("{label} queue {url}");
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let (var, output) = match name {
                "jobs" => (JOBS_QUEUE_ENV, "jobs_queue_url"),
                "bootstrap" => (BOOTSTRAP_QUEUE_ENV, "bootstrap_queue_url"),
                _ => (DLQ_ENV, "dlq_url"),
            };
            let fix = format!(
                "terraform apply creates it (output {output}); {var} must be that URL: {EXPORT_ENV}"
            );
            return Refusal::of(&e)
                .problem(&what, "sqs:GetQueueAttributes", &fix)
                .fail(id);
        }
    };
    let count = |a: A| -> u64 {
        out.attributes()
            .and_then(|m| m.get(&a))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let (waiting, in_flight, delayed) = (
        count(A::ApproximateNumberOfMessages),
        count(A::ApproximateNumberOfMessagesNotVisible),
        count(A::ApproximateNumberOfMessagesDelayed),
    );
    let detail = format!("{what}: {waiting} waiting, {in_flight} in flight, {delayed} delayed");
    if name == "dlq" && waiting + in_flight + delayed > 0 {
        return Check::warn(
            id,
            format!("{detail}: jobs whose handling failed again and again"),
            "look at them (`spotrunner redrive --backend aws --dry-run`), then send them back with `spotrunner redrive --backend aws`",
        );
    }
    Check::pass(id, detail)
}

/// `aws.ledger`: the table is ACTIVE and keyed as the ledger needs.
async fn ledger(dynamodb: &aws_sdk_dynamodb::Client, table: &str) -> Check {
    use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType, TableStatus};
    const ID: &str = "aws.ledger";
    let what = format!("DynamoDB table {table}");
    let out = match dynamodb.describe_table().table_name(table).send().await {
        Ok(out) => out,
        Err(e) => {
            let fix = format!(
                "terraform apply creates it (output ledger_table); {LEDGER_TABLE_ENV} must name it: {EXPORT_ENV}"
            );
            return Refusal::of(&e)
                .problem(&what, "dynamodb:DescribeTable", &fix)
                .fail(ID);
        }
    };
    let Some(t) = out.table() else {
        return Check::fail(
            ID,
            format!("{what}: AWS answered without a description"),
            "run the doctor again",
        );
    };
    let keys: Vec<String> = t
        .key_schema()
        .iter()
        .map(|k| format!("{} ({})", k.attribute_name(), k.key_type()))
        .collect();
    let hash_is_string = t
        .attribute_definitions()
        .iter()
        .any(|a| a.attribute_name() == LEDGER_KEY && a.attribute_type() == &ScalarAttributeType::S);
    let keyed = t.key_schema().len() == 1
        && t.key_schema()[0].attribute_name() == LEDGER_KEY
        && t.key_schema()[0].key_type() == &KeyType::Hash
        && hash_is_string;
    if !keyed {
        return Check::fail(
            ID,
            format!(
                "{what}: key {}; the ledger's is one string hash key {LEDGER_KEY}",
                keys.join(", ")
            ),
            format!(
                "{LEDGER_TABLE_ENV} names another table: set it to the ledger (Terraform output ledger_table): {EXPORT_ENV}"
            ),
        );
    }
    match t.table_status() {
        Some(TableStatus::Active) => Check::pass(
            ID,
            format!(
                "{what}: ACTIVE, {} item(s) (approximate)",
                t.item_count().unwrap_or(0)
            ),
        ),
        Some(TableStatus::Updating) => Check::warn(
            ID,
            format!("{what}: UPDATING (usable meanwhile)"),
            "run the doctor again once the update has finished",
        ),
        other => Check::fail(
            ID,
            format!(
                "{what}: status {}, not ACTIVE",
                other.map(|s| s.as_str()).unwrap_or("unknown")
            ),
            "wait until it is ACTIVE (CREATING); DELETING/ARCHIVED or INACCESSIBLE_ENCRYPTION_CREDENTIALS: terraform apply, restore the table or its KMS key",
        ),
    }
}

/// `aws.ssm_document`: the bootstrap command document exists and is active.
/// `default`: the name is the CLI's default (no `SPOTRUNNER_SSM_DOCUMENT`).
async fn document(ssm: &aws_sdk_ssm::Client, name: &str, default: bool) -> Check {
    use aws_sdk_ssm::types::{DocumentStatus, DocumentType};
    const ID: &str = "aws.ssm_document";
    let what = if default {
        format!("SSM document {name} (the default name: {SSM_DOCUMENT_ENV} is unset)")
    } else {
        format!("SSM document {name}")
    };
    let fix = format!(
        "terraform apply creates it (output ssm_document); {SSM_DOCUMENT_ENV} must name it: {EXPORT_ENV}"
    );
    let out = match ssm.describe_document().name(name).send().await {
        Ok(out) => out,
        Err(e) => {
            return Refusal::of(&e)
                .problem(&what, "ssm:DescribeDocument", &fix)
                .fail(ID);
        }
    };
    let Some(d) = out.document() else {
        return Check::fail(
            ID,
            format!("{what}: AWS answered without a description"),
            fix,
        );
    };
    let version = d.default_version().unwrap_or("?");
    match (d.document_type(), d.status()) {
        (Some(DocumentType::Command), Some(DocumentStatus::Active)) => Check::pass(
            ID,
            format!("{what}: Command document, Active, default version {version}"),
        ),
        (Some(DocumentType::Command), status) => Check::fail(
            ID,
            format!(
                "{what}: status {}, not Active",
                status.map(|s| s.as_str()).unwrap_or("unknown")
            ),
            format!(
                "Creating/Updating: run the doctor again in a moment; Failed: aws ssm describe-document --name {name} says why, then terraform apply"
            ),
        ),
        (other, _) => Check::fail(
            ID,
            format!(
                "{what}: a {} document; RunCommand needs a Command document",
                other.map(|t| t.as_str()).unwrap_or("typeless")
            ),
            fix,
        ),
    }
}

/// What describing one launch template found.
enum Template {
    Found { id: String, default_version: i64 },
    Refused(Problem),
}

/// `aws.launch_template.<pool>` for every pool, and `aws.instance_profile`
/// from the templates found.
async fn templates_and_profile(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    config: &Config,
) -> (Vec<Check>, Check) {
    let mut names: Vec<&str> = Vec::new();
    for p in &config.pools {
        let name = p.launch_template.as_deref().unwrap_or_default();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let found: BTreeMap<&str, Template> = join_all(
        names
            .iter()
            .map(|name| async move { (*name, describe_template(ec2, name).await) }),
    )
    .await
    .into_iter()
    .collect();
    let checks = config
        .pools
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let id = format!("aws.launch_template.{}", p.name);
            let name = p.launch_template.as_deref().unwrap_or_default();
            match &found[name] {
                Template::Found {
                    id: lt,
                    default_version,
                } => Check::pass(
                    id,
                    format!(
                        "pool {}: launch template {name} ({lt}, default version {default_version})",
                        p.name
                    ),
                ),
                Template::Refused(problem) => Problem {
                    detail: format!("pool {}: {}", p.name, problem.detail),
                    fix: problem.fix.replace("pools[N]", &format!("pools[{i}]")),
                }
                .fail(id),
            }
        })
        .collect();
    let existing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| matches!(found[n], Template::Found { .. }))
        .collect();
    (
        checks,
        instance_profile(ec2, iam, &existing, names.len()).await,
    )
}

async fn describe_template(ec2: &aws_sdk_ec2::Client, name: &str) -> Template {
    let what = format!("launch template {name}");
    let fix = "terraform apply creates each pool's template (<prefix>-<pool>; output launch_templates lists them), \
               or correct pools[N].launch_template to name an existing template";
    match ec2
        .describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
    {
        Ok(out) => match out.launch_templates().first() {
            Some(lt) => Template::Found {
                id: lt.launch_template_id().unwrap_or("?").to_string(),
                default_version: lt.default_version_number().unwrap_or(0),
            },
            None => Template::Refused(Problem {
                detail: format!("{what}: not found (AWS answered with no template)"),
                fix: fix.into(),
            }),
        },
        Err(e) => {
            Template::Refused(Refusal::of(&e).problem(&what, "ec2:DescribeLaunchTemplates", fix))
        }
    }
}

/// `aws.instance_profile`: each existing template's default version names an
/// instance profile (without one, a runner cannot reach SSM, so it is never
/// bootstrapped), and that profile exists with a role.
async fn instance_profile(
    ec2: &aws_sdk_ec2::Client,
    iam: &aws_sdk_iam::Client,
    templates: &[&str],
    configured: usize,
) -> Check {
    const ID: &str = "aws.instance_profile";
    if templates.is_empty() {
        return Check::warn(
            ID,
            format!("not checked: none of the {configured} launch template(s) could be read"),
            "fix the aws.launch_template checks first",
        );
    }
    let mut problems: Vec<Problem> = Vec::new();
    // Profile name → the templates using it.
    let mut profiles: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let read = join_all(
        templates
            .iter()
            .map(|name| async move { (*name, template_profile(ec2, name).await) }),
    )
    .await;
    for (template, answer) in read {
        match answer {
            Ok(Some(profile)) => profiles.entry(profile).or_default().push(template),
            Ok(None) => problems.push(Problem {
                detail: format!(
                    "launch template {template} ($Default version) has no IAM instance profile: its runners could not reach SSM and would never be bootstrapped"
                ),
                fix: format!(
                    "give {template} the runner's instance profile (iam_instance_profile; the module's templates use output runner_instance_profile), then terraform apply"
                ),
            }),
            Err(p) => problems.push(p),
        }
    }
    let roles = join_all(profiles.iter().map(|(profile, users)| async move {
        (profile, users, profile_roles(iam, profile, users).await)
    }))
    .await;
    let mut seen = Vec::new();
    for (profile, users, answer) in roles {
        match answer {
            Ok(roles) => seen.push(format!(
                "{} → instance profile {profile} (role {})",
                users.join(", "),
                roles.join(", ")
            )),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        return Check::pass(ID, seen.join("; "));
    }
    let mut fixes: Vec<String> = Vec::new();
    for p in &problems {
        if !fixes.contains(&p.fix) {
            fixes.push(p.fix.clone());
        }
    }
    let details: Vec<String> = problems.into_iter().map(|p| p.detail).collect();
    Check::fail(ID, details.join("; "), fixes.join("; "))
}

/// The instance profile (name) of `template`'s default version, if any.
async fn template_profile(
    ec2: &aws_sdk_ec2::Client,
    template: &str,
) -> Result<Option<String>, Problem> {
    let out = ec2
        .describe_launch_template_versions()
        .launch_template_name(template)
        .versions("$Default")
        .send()
        .await
        .map_err(|e| {
            Refusal::of(&e).problem(
                &format!("launch template {template} ($Default version)"),
                "ec2:DescribeLaunchTemplateVersions",
                "terraform apply (output launch_templates)",
            )
        })?;
    let spec = out
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .and_then(|d| d.iam_instance_profile());
    Ok(spec.and_then(|s| {
        s.name()
            .filter(|n| !n.is_empty())
            // arn:aws:iam::ACCOUNT:instance-profile[/path]/NAME
            .or_else(|| s.arn().and_then(|a| a.rsplit('/').next()))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    }))
}

/// The roles of instance profile `profile`; none is a problem.
async fn profile_roles(
    iam: &aws_sdk_iam::Client,
    profile: &str,
    users: &[&str],
) -> Result<Vec<String>, Problem> {
    let what = format!(
        "instance profile {profile} (of launch template {})",
        users.join(", ")
    );
    let out = iam
        .get_instance_profile()
        .instance_profile_name(profile)
        .send()
        .await
        .map_err(|e| {
            Refusal::of(&e).problem(
                &what,
                "iam:GetInstanceProfile",
                "terraform apply creates the runner's profile (output runner_instance_profile), \
                 or point the template's iam_instance_profile at an existing one",
            )
        })?;
    let roles: Vec<String> = out
        .instance_profile()
        .map(|p| {
            p.roles()
                .iter()
                .map(|r| r.role_name().to_string())
                .collect()
        })
        .unwrap_or_default();
    if roles.is_empty() {
        return Err(Problem {
            detail: format!("{what} has no role: its runners get no credentials for SSM"),
            fix: format!(
                "terraform apply (the module puts the runner role in it), or aws iam add-role-to-instance-profile --instance-profile-name {profile} --role-name ROLE"
            ),
        });
    }
    Ok(roles)
}

/// `aws.subnet.<pool>`: the pool's subnets exist (one DescribeSubnets by
/// filter: it answers with those that exist, so every missing id is named).
async fn pool_subnets(ec2: &aws_sdk_ec2::Client, index: usize, pool: &Pool) -> Check {
    use aws_sdk_ec2::types::Filter;
    let id = format!("aws.subnet.{}", pool.name);
    if pool.subnets.is_empty() {
        return Check::pass(
            id,
            format!(
                "pool {}: no subnets configured: the launch template's network settings decide",
                pool.name
            ),
        );
    }
    let what = format!("pool {}: subnets {}", pool.name, pool.subnets.join(", "));
    let fix = format!(
        "correct pools[{index}].subnets (Terraform variable pools, field subnets) to subnets of the deployment's VPC, then terraform apply"
    );
    let answer = ec2
        .describe_subnets()
        .filters(
            Filter::builder()
                .name("subnet-id")
                .set_values(Some(pool.subnets.clone()))
                .build(),
        )
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            return Refusal::of(&e)
                .problem(&what, "ec2:DescribeSubnets", &fix)
                .fail(id);
        }
    };
    let found: BTreeMap<&str, &aws_sdk_ec2::types::Subnet> = out
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(|i| (i, s)))
        .collect();
    let missing: Vec<&str> = pool
        .subnets
        .iter()
        .map(String::as_str)
        .filter(|s| !found.contains_key(s))
        .collect();
    if !missing.is_empty() {
        return Check::fail(
            id,
            format!(
                "pool {}: subnet(s) {} not found in this account and region (AWS answered {} of {})",
                pool.name,
                missing.join(", "),
                found.len(),
                pool.subnets.len()
            ),
            fix,
        );
    }
    let seen: Vec<String> = pool
        .subnets
        .iter()
        .map(|s| {
            let subnet = found[s.as_str()];
            format!(
                "{s} ({}, {}, {} free addresses)",
                subnet.availability_zone().unwrap_or("?"),
                subnet.vpc_id().unwrap_or("?"),
                subnet.available_ip_address_count().unwrap_or(0)
            )
        })
        .collect();
    let full: Vec<&str> = pool
        .subnets
        .iter()
        .map(String::as_str)
        .filter(|s| found[s].available_ip_address_count() == Some(0))
        .collect();
    if !full.is_empty() {
        return Check::warn(
            id,
            format!("pool {}: {}", pool.name, seen.join(", ")),
            format!(
                "{} has no free address: no runner launches there; add subnets to pools[{index}].subnets",
                full.join(", ")
            ),
        );
    }
    Check::pass(id, format!("pool {}: {}", pool.name, seen.join(", ")))
}

/// The configuration's secret references, by field.
fn secret_refs(config: &Config) -> Vec<(String, &SecretRef)> {
    let mut out = Vec::new();
    match &config.github.auth {
        GitHubAuth::App {
            app_id,
            private_key,
        } => {
            if let AppId::Ref(r) = app_id {
                out.push(("github.auth.app_id".to_string(), r));
            }
            out.push(("github.auth.private_key".to_string(), private_key))
        }
        GitHubAuth::Pat { token } => out.push(("github.auth.token".to_string(), token)),
    }
    for (i, s) in config.webhook.secrets.iter().enumerate() {
        out.push((format!("webhook.secrets[{i}]"), s));
    }
    out
}

/// `aws.secret.<field>`: the referenced parameter exists, preferably as a
/// SecureString. Read without decryption; the value is dropped unread.
async fn secret(ssm: &aws_sdk_ssm::Client, field: String, reference: &SecretRef) -> Check {
    use aws_sdk_ssm::types::ParameterType;
    let id = format!("aws.secret.{field}");
    let name = match reference {
        SecretRef::Ssm(name) => name,
        other => {
            return Check::warn(
                id,
                format!(
                    "{field} is {other}, not an SSM parameter: each process reads it from its own environment or files, not checked here"
                ),
                "on AWS use an ssm: reference (the Lambdas read SSM), e.g. the parameter Terraform writes",
            );
        }
    };
    let what = format!("{field}: SSM parameter {name}");
    let answer = ssm
        .get_parameter()
        .name(name)
        .with_decryption(false)
        .send()
        .await;
    let out = match answer {
        Ok(out) => out,
        Err(e) => {
            let fix = format!(
                "`spotrunner github-app create --backend aws …` writes it, or set it with aws ssm put-parameter --name {name} --type SecureString --value …"
            );
            return Refusal::of(&e)
                .problem(&what, "ssm:GetParameter", &fix)
                .fail(id);
        }
    };
    let (kind, version) = out
        .parameter()
        .map(|p| (p.r#type().cloned(), p.version()))
        .unwrap_or((None, 0));
    match kind {
        Some(ParameterType::SecureString) => {
            Check::pass(id, format!("{what}: a SecureString (version {version})"))
        }
        // The App's id is no secret (github-app create stores it as a String).
        Some(ParameterType::String) if field == "github.auth.app_id" => {
            Check::pass(id, format!("{what}: a String (version {version})"))
        }
        other => Check::warn(
            id,
            format!(
                "{what}: a {} parameter (version {version}), stored unencrypted",
                other.as_ref().map(|t| t.as_str()).unwrap_or("typeless")
            ),
            format!(
                "store it as SecureString: aws ssm put-parameter --name {name} --type SecureString --overwrite --value … (delete it first if SSM refuses the change of type)"
            ),
        ),
    }
}

/// A problem found: what was seen and what to do.
struct Problem {
    detail: String,
    fix: String,
}

impl Problem {
    fn fail(self, id: impl Into<String>) -> Check {
        Check::fail(id, self.detail, self.fix)
    }
}

/// What AWS answered to a call that failed: its error code and message, or
/// why there was no answer.
#[derive(Debug)]
struct Refusal {
    code: Option<String>,
    message: String,
}

impl Refusal {
    fn of<E, R>(e: &SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match e {
            SdkError::ServiceError(s) => Self {
                code: s.err().code().map(str::to_string),
                message: s
                    .err()
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| s.err().to_string()),
            },
            other => Self {
                code: None,
                message: DisplayErrorContext(other).to_string(),
            },
        }
    }

    /// The problem of looking for `what`: by the answer's code, `missing_fix`
    /// (not found, or any other refusal of the request), the IAM `action` the
    /// caller lacks, or the credentials, region or network.
    fn problem(&self, what: &str, action: &str, missing_fix: &str) -> Problem {
        let Some(code) = self.code.as_deref() else {
            return Problem {
                detail: format!("{what}: no answer from AWS: {}", self.message),
                fix: "check the region (AWS_REGION), credentials (aws sts get-caller-identity), AWS_ENDPOINT_URL and network access to AWS".into(),
            };
        };
        let answered = format!("AWS answered {code}: {}", self.message);
        let (detail, fix) = if is_denied(code) {
            (
                format!("{what}: access denied ({answered})"),
                format!(
                    "the credentials in use (aws sts get-caller-identity) need {action} on it: allow it in their IAM policy"
                ),
            )
        } else if is_bad_credentials(code) {
            (
                format!("{what}: credentials refused ({answered})"),
                "refresh the AWS credentials (aws sso login, or the profile / AWS_* variables in use) and check them with aws sts get-caller-identity".into(),
            )
        } else if is_throttled(code) {
            (
                format!("{what}: throttled ({answered})"),
                "run the doctor again in a moment".into(),
            )
        } else if is_not_found(code) {
            (
                format!("{what}: not found ({answered})"),
                missing_fix.into(),
            )
        } else {
            (format!("{what}: {answered}"), missing_fix.into())
        };
        Problem { detail, fix }
    }
}

fn is_denied(code: &str) -> bool {
    code.contains("AccessDenied")
        || matches!(
            code,
            "UnauthorizedOperation" | "AuthorizationError" | "UnauthorizedAccess" | "Forbidden"
        )
}

fn is_bad_credentials(code: &str) -> bool {
    matches!(
        code,
        "UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidAccessKeyId"
            | "ExpiredToken"
            | "ExpiredTokenException"
            | "RequestExpired"
            | "AuthFailure"
            | "SignatureDoesNotMatch"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationToken"
    )
}

fn is_throttled(code: &str) -> bool {
    code.contains("Throttl") || code == "RequestLimitExceeded" || code == "TooManyRequestsException"
}

fn is_not_found(code: &str) -> bool {
    code.contains("NotFound")
        || code.contains("NonExistent")
        || matches!(
            code,
            "QueueDoesNotExist" | "NoSuchEntity" | "InvalidDocument"
        )
}

/// A configuration error for display: messages about the secret fields
/// (`github.auth.*`, `webhook.secrets*`) lose any quoted text, which may be
/// a secret pasted where its reference belongs.
fn redacted(mut e: ConfigError) -> ConfigError {
    for f in &mut e.errors {
        let secret = f.field.starts_with("github.auth") || f.field.starts_with("webhook");
        if secret {
            f.message = strip_quoted(&f.message);
        }
    }
    e
}

/// `s` with every `"…"` span (Rust's debug quoting: `\"` inside) replaced
/// by `"<redacted>"`; an unclosed quote hides the rest.
fn strip_quoted(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            out.push(c);
            continue;
        }
        out.push_str("\"<redacted>\"");
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => break,
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "aws_tests.rs"]
mod tests;
