//! The AWS side of the doctor: what the deployment's Lambdas need exists and answers.

use super::report::Check;
use aws_config::SdkConfig;
use spotrunner_aws::runtime::EnvSource;
use spotrunner_core::Config;

/// Read and validate the deployed configuration document.
pub async fn load_config(sdk: &SdkConfig, parameter: &str) -> (Check, Option<Config>) {
    let _ = (sdk, parameter);
    (
        Check::fail("aws.config_parameter", "not checked yet", "(being built)"),
        None,
    )
}

/// Every AWS resource `config` and the environment name.
pub async fn checks(sdk: &SdkConfig, config: &Config, env: &dyn EnvSource) -> Vec<Check> {
    let _ = (sdk, config, env);
    Vec::new()
}
