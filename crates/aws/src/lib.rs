//! spotrunner's ports on the AWS SDK: SQS, SSM and DynamoDB, one module each.
//! EC2 lives in `spotrunner-aws-ec2` so that the webhook never links it.
//! All clients come from the standard SDK configuration, so `AWS_ENDPOINT_URL`
//! points them at a local emulator.

pub mod dynamodb;
pub mod error;
pub mod metrics;
pub mod reload;
pub mod runner_pin;
pub mod runtime;
pub mod sdk;
pub mod sqs;
pub mod sqs_bootstrap;
pub mod sqs_dlq;
pub mod ssm;
pub mod ssm_runner;
