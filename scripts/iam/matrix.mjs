#!/usr/bin/env node
// Effective-permission matrix of a deployed spotrunner module.
//
//   node scripts/iam/matrix.mjs POLICIES.json [--verbose]
//
// POLICIES.json is what scripts/iam/dump_roles.py read from the IAM API after
// an apply (scripts/terraform-check.sh: examples/local on moto): every role of
// the deployment with its inline policies and attached policies' documents.
// Each row asks an IAM policy evaluator (@cloud-copilot/iam-simulate: Action,
// Resource, Condition, policy variables, explicit Deny) whether one request
// of one role is allowed, and compares with what the module promises.
//
// Then the regression checks, which prove that the matrix catches mistakes:
//  - the runner role with AmazonSSMManagedInstanceCore re-attached must FAIL
//    the runner rows (it reads any parameter outside the deployment);
//  - the old runner grant keyed on ${ec2:InstanceID} must FAIL (a runner could
//    not read its own JIT config);
//  - the runner role with AdministratorAccess as an extra policy must still
//    be denied the deployment's secrets and control plane (explicit Deny),
//    and without its guardrail policy it must not be.
//  - without the shared guardrails-watch policy, AdministratorAccess must
//    reach the alarms, the event source mappings and the janitor's rule.
// Every pool has its own runner role (<prefix>-runner-<pool>): the runner rows
// and the AdministratorAccess rows run once per pool role, with that pool's
// startup script allowed and every other pool's denied, its own extra
// policies reaching its jobs only, and its credentials bound to the
// instance's VPC and address (aws:ec2InstanceSourceVPC / ...PrivateIPv4).
// The AdministratorAccess rows also cover what a job could use to switch the
// control plane off, as found deployed (dump.deployed): the EventBridge rules,
// event source mappings, the webhook API, log groups, alarms, the pools'
// security groups, the runners' volumes, snapshots and network interfaces, the
// deployment's parameters and custom resolve:ssm: AMI parameters.
// The queue policies of the stop-events queue and its DLQ are evaluated too:
// only EventBridge, only for this deployment's stop-runner rules (aws:SourceArn).
// And a static check: no resource pattern of deployment <prefix> matches a
// resource of deployment <prefix>-prod.
//
// One line per row: PASS/FAIL, the decision (ALLOW/DENY), the expectation,
// role, action, resource, and on a mismatch the decisive statement(s).
// Exit 0 only when every row and every regression check passes.

import { runSimulation } from '@cloud-copilot/iam-simulate'
import { readFileSync } from 'node:fs'

const args = process.argv.slice(2)
const verbose = args.includes('--verbose')
const file = args.find((a) => !a.startsWith('--'))
if (!file) {
  console.error('usage: node scripts/iam/matrix.mjs POLICIES.json [--verbose]')
  process.exit(2)
}
const dump = JSON.parse(readFileSync(file, 'utf8'))
const { account: A, region: R, partition: PART, prefix: P, outputs: out } = dump
const O = `${P}-prod` // another deployment whose name starts with ours

// --- names and ARNs -----------------------------------------------------------
const param = (name) => `arn:${PART}:ssm:${R}:${A}:parameter/${name.replace(/^\//, '')}`
const paramPath = (path) => `arn:${PART}:ssm:${R}:${A}:parameter${path === '/' ? '/' : path}`
const queueArn = (url) => `arn:${PART}:sqs:${R}:${A}:${url.split('/').pop()}`
const table = (name) => `arn:${PART}:dynamodb:${R}:${A}:table/${name}`
const ec2 = (what) => `arn:${PART}:ec2:${R}:${A}:${what}`
const instance = (id) => ec2(`instance/${id}`)
const role = (name) => `arn:${PART}:iam::${A}:role/${name}`
const fn = (name) => `arn:${PART}:lambda:${R}:${A}:function:${name}`
const logStream = (fnName) =>
  `arn:${PART}:logs:${R}:${A}:log-group:/aws/lambda/${fnName}:log-stream:2025/01/01/[$LATEST]abc`
const s3obj = (bucket, key) => `arn:${PART}:s3:::${bucket}/${key}`

const kmsKey = out.parameter_kms_key_arn || null
const otherKey = `arn:${PART}:kms:${R}:${A}:key/00000000-0000-0000-0000-000000000000` // e.g. aws/ssm
const credential = param(out.github_credential_parameter)
const webhookSecrets = out.webhook_secret_parameters.map(param)
const config = param(out.config_parameter)
const jitName = (name) => `${out.jit_parameter_prefix}${name}`
const ownJit = param(jitName(`${P}_cpu-4242-1`))
const otherJit = param(jitName(`${P}_cpu-4343-1`))
const freshJit = param(jitName(`${P}_cpu-4444-1`))
const unrelated = param('/team-x/database/password')
const ownInstance = instance('i-0aaaaaaaaaaaaaaa1')
const otherRunner = instance('i-0bbbbbbbbbbbbbbb2')
const jobs = queueArn(out.jobs_queue_url)
const bootstrapQ = queueArn(out.bootstrap_queue_url)
const dlq = queueArn(out.dlq_url)
const bootstrapDlq = queueArn(out.bootstrap_dlq_url)
const stopEvents = queueArn(out.stop_events_queue_url)
const stopEventsDlq = queueArn(out.stop_events_dlq_url)
const rule = (name) => `arn:${PART}:events:${R}:${A}:rule/${name}`
const stopRules = ['ssm-command', 'spot-interruption', 'instance-state'].map((k) => rule(out.event_rules[k]))
const ledger = table(out.ledger_table)
const bucket = out.bucket
const document = `arn:${PART}:ssm:${R}:${A}:document/${out.ssm_document}`
const templates = Object.values(out.launch_templates).map((t) => ec2(`launch-template/${t.id}`))
const ourTemplate = templates[0]
const foreignTemplate = ec2('launch-template/lt-0ffffffffffffffff')
const functions = out.function_names
// Pools, and each pool's runner role (older dumps: one role `runner` for all).
const pools = Object.keys(out.launch_templates)
const runnerRoles = out.runner_roles || {}
const runnerKey = (pool) => (dump.roles[`runner-${pool}`] ? `runner-${pool}` : 'runner')
const runnerRoleOf = (pool) => dump.roles[runnerKey(pool)].arn
// Pools with a startup script (examples/local: cpu and arm) and each pool's
// extra policies (examples/local: arm reads team-artifacts).
const startupPools = Object.keys(runnerRoles).length
  ? pools.filter((p) => runnerRoles[p].startup_script_key)
  : ['cpu', 'arm']
const teamArtifact = `arn:${PART}:s3:::team-artifacts/build.tar`
const hasExtraFor = (pool) => (runnerRoles[pool]?.extra_policy_arns || []).length > 0
const bindingOf = (pool) => runnerRoles[pool]?.credential_binding || 'off'
// What the deployment runs, found in the emulator by its tag (dump_roles.py).
const deployed = dump.deployed || {}
const INSTANCE_VPC = 'vpc-0runner0000000001'
const INSTANCE_IP = '10.0.1.23'
// A request from the instance, through a VPC endpoint of its VPC.
const throughEndpoint = {
  'aws:ec2InstanceSourceVPC': INSTANCE_VPC,
  'aws:ec2InstanceSourcePrivateIPv4': INSTANCE_IP,
  'aws:SourceVpc': INSTANCE_VPC,
  'aws:VpcSourceIp': INSTANCE_IP,
  'aws:ViaAWSService': 'false',
}

const other = {
  config: param(`/${O}/config`),
  credential: param(`/${O}/github/pat`),
  webhook: param(`/${O}/webhook/secret`),
  jit: param(`/${O}/jit/${O}_cpu-4242-1`),
  jobs: `arn:${PART}:sqs:${R}:${A}:${O}-jobs`,
  bootstrap: `arn:${PART}:sqs:${R}:${A}:${O}-bootstrap`,
  dlq: `arn:${PART}:sqs:${R}:${A}:${O}-jobs-dlq`,
  bootstrapDlq: `arn:${PART}:sqs:${R}:${A}:${O}-bootstrap-dlq`,
  stopEvents: `arn:${PART}:sqs:${R}:${A}:${O}-stop-events`,
  stopEventsDlq: `arn:${PART}:sqs:${R}:${A}:${O}-stop-events-dlq`,
  stopRule: rule(`${O}-ssm-command`),
  ledger: table(`${O}-ledger`),
  instance: instance('i-0ccccccccccccccc3'),
  document: `arn:${PART}:ssm:${R}:${A}:document/${O}-runner`,
  runnerRole: role(`${O}-runner`),
}

// --- request contexts -----------------------------------------------------------
const TAG = 'spotrunner:deployment'
const paramTags = (tags) => {
  const ctx = {}
  for (const [k, v] of Object.entries(tags)) {
    ctx[`ssm:resourceTag/${k}`] = v
    ctx[`aws:ResourceTag/${k}`] = v
  }
  return ctx
}
const jitTags = (instanceArn) =>
  paramTags({
    [TAG]: P,
    'spotrunner:runner-name': `${P}_cpu-4242-1`,
    'spotrunner:job-id': '4242',
    ...(instanceArn ? { 'spotrunner:instance-arn': instanceArn } : {}),
  })
const instanceTags = (deployment) =>
  deployment ? { [`aws:ResourceTag/${TAG}`]: deployment, [`ssm:resourceTag/${TAG}`]: deployment } : {}
const viaSsm = { 'kms:ViaService': `ssm.${R}.amazonaws.com` }
const kmsCtx = (parameterArn) => ({ 'kms:EncryptionContext:PARAMETER_ARN': parameterArn, ...viaSsm })
const keys = (...k) => ({ 'dynamodb:LeadingKeys': k })
const launch = (template, deployment = P) => ({
  'ec2:LaunchTemplate': template,
  [`aws:RequestTag/${TAG}`]: deployment,
  'aws:TagKeys': [TAG, 'spotrunner:pool', 'spotrunner:runner-name', 'spotrunner:job-id'],
})

// --- rows -------------------------------------------------------------------------
// [expect, action, resource, context, note]
const ALLOW = 'ALLOW'
const DENY = 'DENY'
// The request context of a call made with the instance's credentials on the
// instance: through a VPC endpoint when the pool binds its credentials
// strictly (it could not call otherwise), else as a plain call.
const baseOnInstance = { 'ec2:SourceInstanceARN': ownInstance }
let onInstance = baseOnInstance
let runnerRole = null
let currentPool = null
function forPool(pool) {
  currentPool = pool
  runnerRole = runnerRoleOf(pool)
  onInstance = bindingOf(pool) === 'strict' ? { ...baseOnInstance, ...throughEndpoint } : baseOnInstance
}

// The pool's own startup script is readable, no other pool's; its extra
// policies reach its jobs only.
function poolRows(pool) {
  const rows = startupPools.map((p) =>
    p === pool
      ? [ALLOW, 's3:GetObject', s3obj(bucket, `startup/${p}.sh`), { ...onInstance }, 'its own pool\'s startup script']
      : [DENY, 's3:GetObject', s3obj(bucket, `startup/${p}.sh`), { ...onInstance }, `pool ${p}'s startup script`],
  )
  rows.push([hasExtraFor(pool) ? ALLOW : DENY, 's3:GetObject', teamArtifact, { ...onInstance }, hasExtraFor(pool) ? 'its pool\'s extra policy (team-artifacts)' : 'another pool\'s extra policy (team-artifacts)'])
  return rows
}

// Credentials bound to the instance's VPC and private address: used through a
// VPC endpoint of another VPC, or from another address, they are refused.
function bindingRows() {
  const jit = { 'ec2:SourceInstanceARN': ownInstance, ...jitTags(ownInstance) }
  const rows = [
    [ALLOW, 'ssm:GetParameter', ownJit, { ...jit, ...throughEndpoint }, 'credentials used from the instance (VPC endpoint)'],
    [DENY, 'ssm:GetParameter', ownJit, { ...jit, ...throughEndpoint, 'aws:SourceVpc': 'vpc-0elsewhere000000001' }, 'credentials used from another VPC (its VPC endpoint)'],
    [DENY, 'ssm:GetParameter', ownJit, { ...jit, ...throughEndpoint, 'aws:VpcSourceIp': '10.0.9.99' }, 'credentials used from another address of the VPC'],
    [DENY, 's3:GetObject', s3obj(bucket, out.bootstrap_script_key), { 'ec2:SourceInstanceARN': ownInstance, ...throughEndpoint, 'aws:SourceVpc': 'vpc-0elsewhere000000001' }, 'bucket read from another VPC'],
  ]
  if (bindingOf(currentPool) === 'strict') {
    rows.push(
      [DENY, 'ssm:GetParameter', ownJit, { ...jit, 'aws:SourceIp': '203.0.113.7', 'aws:ViaAWSService': 'false' }, 'credentials used over the internet (strict binding)'],
      ...(kmsKey ? [[ALLOW, 'kms:Decrypt', kmsKey, { 'ec2:SourceInstanceARN': ownInstance, ...kmsCtx(ownJit), 'aws:ViaAWSService': 'true', 'aws:ec2InstanceSourceVPC': INSTANCE_VPC }, 'KMS called by SSM on its behalf (strict binding)']] : []),
    )
  } else {
    // Documented: without VPC endpoints the keys to compare are absent.
    rows.push([ALLOW, 'ssm:GetParameter', ownJit, { ...jit, 'aws:SourceIp': '203.0.113.7', 'aws:ViaAWSService': 'false' }, 'credentials used over the internet (by design: binding "endpoints" binds endpoint calls only)'])
  }
  return rows
}

function runnerRows() {
  const rows = [
    ...bindingRows(),
    // its own JIT config, bound to it by tag; nothing else
    [ALLOW, 'ssm:GetParameter', ownJit, { ...onInstance, ...jitTags(ownInstance) }, 'own JIT parameter'],
    [ALLOW, 'ssm:DeleteParameter', ownJit, { ...onInstance, ...jitTags(ownInstance) }, 'own JIT parameter'],
    [ALLOW, 'ssm:GetParameter', ownJit, { ...onInstance, 'aws:ResourceTag/spotrunner:instance-arn': ownInstance }, 'own JIT parameter, tag seen as aws:ResourceTag only'],
    [ALLOW, 'ssm:GetParameter', ownJit, { ...onInstance, 'ssm:resourceTag/spotrunner:instance-arn': ownInstance }, 'own JIT parameter, tag seen as ssm:resourceTag only'],
    [DENY, 'ssm:GetParameter', otherJit, { ...onInstance, ...jitTags(otherRunner) }, "another instance's JIT parameter"],
    [DENY, 'ssm:DeleteParameter', otherJit, { ...onInstance, ...jitTags(otherRunner) }, "another instance's JIT parameter"],
    [DENY, 'ssm:GetParameter', freshJit, { ...onInstance, ...jitTags(null) }, 'JIT parameter not bound to an instance yet (untagged)'],
    [DENY, 'ssm:GetParameter', ownJit, { ...jitTags(ownInstance) }, 'own JIT parameter, request without ec2:SourceInstanceARN'],
    [DENY, 'ssm:PutParameter', ownJit, { ...onInstance, ...jitTags(ownInstance) }, 'overwrite own JIT parameter'],
    [DENY, 'ssm:AddTagsToResource', otherJit, { ...onInstance, ...jitTags(otherRunner), 'aws:TagKeys': ['spotrunner:instance-arn'] }, "re-bind another instance's JIT parameter to itself"],
    [DENY, 'ssm:GetParameter', credential, { ...onInstance, ...paramTags({ [TAG]: P }) }, 'GitHub credential'],
    [DENY, 'ssm:GetParameter', credential, { ...onInstance, ...paramTags({ [TAG]: P, 'spotrunner:instance-arn': ownInstance }) }, 'GitHub credential, even if tagged with this instance'],
    ...webhookSecrets.map((s) => [DENY, 'ssm:GetParameter', s, { ...onInstance, ...paramTags({ [TAG]: P }) }, 'webhook secret']),
    [DENY, 'ssm:GetParameter', config, { ...onInstance, ...paramTags({ [TAG]: P }) }, 'configuration document'],
    [DENY, 'ssm:GetParameterHistory', credential, { ...onInstance }, 'GitHub credential history'],
    [DENY, 'ssm:GetParametersByPath', paramPath(`/${P}`), { ...onInstance }, 'the deployment by path'],
    [DENY, 'ssm:GetParameter', unrelated, { ...onInstance }, 'unrelated untagged parameter elsewhere'],
    [DENY, 'ssm:GetParameters', unrelated, { ...onInstance }, 'unrelated untagged parameter elsewhere'],
    // the SSM agent (Run Command)
    [ALLOW, 'ssm:UpdateInstanceInformation', ownInstance, { ...onInstance, ...instanceTags(P) }, 'SSM agent heartbeat'],
    [ALLOW, 'ssm:ListInstanceAssociations', ownInstance, { ...onInstance, ...instanceTags(P) }, 'SSM agent association poll'],
    ...['GetEndpoint', 'GetMessages', 'AcknowledgeMessage', 'SendReply', 'FailMessage', 'DeleteMessage'].map((a) => [ALLOW, `ec2messages:${a}`, '*', { ...onInstance }, 'SSM agent (MDS)']),
    [ALLOW, 'ssmmessages:CreateControlChannel', '*', { ...onInstance }, 'SSM agent (MGS control channel)'],
    [ALLOW, 'ssmmessages:OpenControlChannel', '*', { ...onInstance }, 'SSM agent (MGS control channel)'],
    [DENY, 'ssmmessages:CreateDataChannel', '*', { ...onInstance }, 'no Session Manager data channel'],
    // the bucket
    [ALLOW, 's3:GetObject', s3obj(bucket, out.bootstrap_script_key), { ...onInstance }, 'bootstrap.sh'],
    ...poolRows(currentPool),
    [ALLOW, 's3:GetObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.329.0.tar.gz'), { ...onInstance }, 'runner tarball'],
    [DENY, 's3:PutObject', s3obj(bucket, out.bootstrap_script_key), { ...onInstance }, 'overwrite bootstrap.sh'],
    [DENY, 's3:PutObject', s3obj(bucket, 'startup/cpu.sh'), { ...onInstance }, 'overwrite a startup script'],
    [DENY, 's3:DeleteObject', s3obj(bucket, out.bootstrap_script_key), { ...onInstance }, 'delete bootstrap.sh'],
    [DENY, 's3:PutObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.329.0.tar.gz'), { ...onInstance, 's3:if-none-match': '*' }, 'fill the runner cache (runner_cache_upload off)'],
    [DENY, 's3:PutObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.331.0.tar.gz.sha256'), { ...onInstance, 's3:if-none-match': '*' }, 'plant a checksum sidecar'],
    // the control plane
    [DENY, 'ec2:RunInstances', instance('*'), { ...onInstance }, 'launch an instance'],
    [DENY, 'ec2:CreateFleet', ec2('fleet/*'), { ...onInstance }, 'launch a fleet'],
    [DENY, 'ssm:SendCommand', otherRunner, { ...onInstance, ...instanceTags(P) }, 'command another runner'],
    [DENY, 'ssm:SendCommand', document, { ...onInstance }, 'send the bootstrap document'],
    [DENY, 'ssm:StartSession', otherRunner, { ...onInstance, ...instanceTags(P) }, 'session on another runner'],
    [DENY, 'ec2:TerminateInstances', otherRunner, { ...onInstance, ...instanceTags(P) }, 'terminate another runner'],
    [DENY, 'iam:PassRole', runnerRole, { ...onInstance, 'iam:PassedToService': 'ec2.amazonaws.com' }, 'pass the runner role'],
    [DENY, 'dynamodb:GetItem', ledger, { ...onInstance, ...keys('job#4242') }, 'ledger'],
    [DENY, 'sqs:SendMessage', jobs, { ...onInstance }, 'jobs queue'],
    [DENY, 'sqs:ReceiveMessage', jobs, { ...onInstance }, 'jobs queue'],
    [DENY, 'sqs:SendMessage', stopEvents, { ...onInstance }, 'forge a stop event'],
    [DENY, 'sqs:SendMessage', bootstrapQ, { ...onInstance }, 'forge a bootstrap step'],
  ]
  if (kmsKey) {
    rows.push(
      [ALLOW, 'kms:Decrypt', kmsKey, { ...onInstance, ...kmsCtx(ownJit) }, 'decrypt a JIT parameter (SSM)'],
      [DENY, 'kms:Decrypt', kmsKey, { ...onInstance, ...kmsCtx(credential) }, 'decrypt the GitHub credential'],
      [DENY, 'kms:Decrypt', kmsKey, { ...onInstance, ...kmsCtx(config) }, 'decrypt the configuration'],
      [DENY, 'kms:Decrypt', kmsKey, { ...onInstance }, 'decrypt without context (direct call)'],
      [DENY, 'kms:Decrypt', kmsKey, { ...onInstance, 'kms:EncryptionContext:PARAMETER_ARN': ownJit }, 'decrypt a JIT context outside SSM'],
    )
  }
  return rows
}

// What the guardrails must hold against AdministratorAccess as an extra policy.
function adminRows() {
  const rows = [
    [ALLOW, 'ssm:GetParameter', ownJit, { ...onInstance, ...jitTags(ownInstance) }, 'own JIT parameter'],
    [DENY, 'ssm:GetParameter', otherJit, { ...onInstance, ...jitTags(otherRunner) }, "another instance's JIT parameter"],
    [DENY, 'ssm:GetParameter', freshJit, { ...onInstance, ...jitTags(null) }, 'unbound JIT parameter'],
    [DENY, 'ssm:AddTagsToResource', otherJit, { ...onInstance, 'aws:TagKeys': ['spotrunner:instance-arn'] }, "re-bind another instance's JIT parameter"],
    [DENY, 'ssm:GetParameter', credential, { ...onInstance }, 'GitHub credential'],
    [DENY, 'ssm:GetParameters', credential, { ...onInstance }, 'GitHub credential (GetParameters)'],
    [DENY, 'ssm:GetParameterHistory', credential, { ...onInstance }, 'GitHub credential history'],
    ...webhookSecrets.map((s) => [DENY, 'ssm:GetParameter', s, { ...onInstance }, 'webhook secret']),
    [DENY, 'ssm:GetParameter', config, { ...onInstance }, 'configuration document'],
    [DENY, 'ssm:PutParameter', config, { ...onInstance }, 'rewrite the configuration'],
    [DENY, 'ssm:GetParametersByPath', paramPath(`/${P}/`), { ...onInstance, 'ssm:Recursive': 'true' }, 'the deployment by path (trailing /)'],
    [DENY, 'ssm:GetParametersByPath', paramPath(`/${P}/jit`), { ...onInstance, 'ssm:Recursive': 'true' }, 'every JIT parameter by path'],
    [DENY, 'ssm:GetParametersByPath', paramPath(`/${P}`), { ...onInstance, 'ssm:Recursive': 'true' }, 'the deployment by path'],
    [DENY, 'kms:Decrypt', otherKey, { ...onInstance, ...kmsCtx(credential) }, 'decrypt the credential under any key (aws/ssm)'],
    [DENY, 's3:PutObject', s3obj(bucket, out.bootstrap_script_key), { ...onInstance }, 'overwrite bootstrap.sh'],
    [DENY, 's3:PutObject', s3obj(bucket, 'startup/cpu.sh'), { ...onInstance }, 'overwrite a startup script'],
    [DENY, 's3:PutObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.329.0.tar.gz'), { ...onInstance }, 'overwrite the runner tarball'],
    [DENY, 's3:PutObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.331.0.tar.gz.sha256'), { ...onInstance, 's3:if-none-match': '*' }, 'plant a checksum sidecar'],
    [DENY, 's3:PutBucketPolicy', `arn:${PART}:s3:::${bucket}`, { ...onInstance }, 'bucket policy'],
    [DENY, 'dynamodb:PutItem', ledger, { ...onInstance, ...keys('capacity#global') }, 'ledger'],
    [DENY, 'sqs:SendMessage', jobs, { ...onInstance }, 'jobs queue'],
    [DENY, 'sqs:PurgeQueue', dlq, { ...onInstance }, 'DLQ'],
    [DENY, 'sqs:SendMessage', stopEvents, { ...onInstance }, 'forge a stop event'],
    [DENY, 'sqs:PurgeQueue', stopEventsDlq, { ...onInstance }, 'stop-events DLQ'],
    [DENY, 'sqs:PurgeQueue', bootstrapDlq, { ...onInstance }, 'bootstrap DLQ'],
    [DENY, 'sqs:SetQueueAttributes', stopEvents, { ...onInstance }, 'rewrite the stop-events queue policy'],
    [DENY, 'lambda:UpdateFunctionCode', fn(functions['create-runner']), { ...onInstance }, 'replace create-runner'],
    [DENY, 'ssm:UpdateDocument', document, { ...onInstance }, 'rewrite the bootstrap document'],
    [DENY, 'ssm:SendCommand', otherRunner, { ...onInstance, ...instanceTags(P) }, 'command another runner'],
    [DENY, 'ssm:StartSession', otherRunner, { ...onInstance, ...instanceTags(P) }, 'session on another runner'],
    [DENY, 'ec2:TerminateInstances', otherRunner, { ...onInstance, ...instanceTags(P) }, 'terminate another runner'],
    [DENY, 'ec2:CreateTags', otherRunner, { ...onInstance, ...instanceTags(P) }, 'retag another runner'],
    [DENY, 'ec2:RunInstances', ourTemplate, { ...onInstance, 'ec2:LaunchTemplate': ourTemplate }, 'launch from our launch template'],
    [DENY, 'ec2:RunInstances', instance('*'), { ...onInstance, [`aws:RequestTag/${TAG}`]: P }, 'launch an instance tagged as ours'],
    [DENY, 'iam:PassRole', runnerRole, { ...onInstance, 'iam:PassedToService': 'ec2.amazonaws.com' }, 'pass the runner role'],
    [DENY, 'iam:DeleteRolePolicy', runnerRole, { ...onInstance }, 'remove the guardrails'],
    [DENY, 'iam:PassRole', out.role_arns['create-runner'], { ...onInstance, 'iam:PassedToService': 'lambda.amazonaws.com' }, 'pass a Lambda role'],
    // By design the guardrails cover this deployment only: an extra policy's
    // own grants elsewhere stay (a job may build AMIs, read its own secrets).
    [ALLOW, 'ssm:GetParameter', unrelated, { ...onInstance }, 'unrelated parameter (by design: extra policy)'],
    [ALLOW, 'ec2:RunInstances', instance('*'), { ...onInstance }, 'untagged instance (by design: extra policy)'],
    ...startupPools.filter((p) => p !== currentPool).map((p) => [DENY, 's3:GetObject', s3obj(bucket, `startup/${p}.sh`), { ...onInstance }, `pool ${p}'s startup script`]),
    ...bindingRows().filter((r) => r[0] === DENY),
    ...controlPlaneRows(),
  ]
  if (kmsKey) {
    rows.push(
      [DENY, 'kms:Decrypt', kmsKey, { ...onInstance, ...kmsCtx(credential) }, 'decrypt the GitHub credential'],
      [DENY, 'kms:Decrypt', kmsKey, { ...onInstance }, 'decrypt without context'],
      [DENY, 'kms:PutKeyPolicy', kmsKey, { ...onInstance }, 'key policy of the parameter key'],
      [DENY, 'kms:CreateGrant', kmsKey, { ...onInstance }, 'grant on the parameter key'],
      [ALLOW, 'kms:Decrypt', kmsKey, { ...onInstance, ...kmsCtx(ownJit) }, 'decrypt a JIT parameter'],
    )
  }
  return rows
}

// What a job with AdministratorAccess could use to switch the control plane
// off or reach other runners: each resource found deployed, and the runners'
// volumes, snapshots and network interfaces (by the deployment tag).
function controlPlaneRows() {
  const tagged = instanceTags(P)
  const eventRules = deployed.event_rules || []
  const mappings = (deployed.event_source_mappings || []).map((u) => `arn:${PART}:lambda:${R}:${A}:event-source-mapping:${u}`)
  const apis = (deployed.apis || []).map((id) => `arn:${PART}:apigateway:${R}::/apis/${id}`)
  const logGroup = (name) => `arn:${PART}:logs:${R}:${A}:log-group:${name}`
  const alarm = (name) => `arn:${PART}:cloudwatch:${R}:${A}:alarm:${name}`
  const sg = (id) => ec2(`security-group/${id}`)
  const guardrailPolicies = Object.values(dump.roles)
    .flatMap((r) => r.attached)
    .filter((p) => p.name.includes('guardrails'))
    .map((p) => p.arn)
  const rows = [
    ...eventRules.flatMap((r) => ['events:DisableRule', 'events:RemoveTargets', 'events:PutTargets', 'events:DeleteRule'].map((a) => [DENY, a, r, { ...onInstance }, `rule ${r.split('/').pop()}`])),
    ...mappings.flatMap((m) => ['lambda:UpdateEventSourceMapping', 'lambda:DeleteEventSourceMapping'].map((a) => [DENY, a, m, { ...onInstance }, 'stop a queue (event source mapping)'])),
    ...apis.flatMap((api) => [
      [DENY, 'apigateway:DELETE', api, { ...onInstance }, 'delete the webhook API'],
      [DENY, 'apigateway:PATCH', `${api}/stages/$default`, { ...onInstance }, "lift the webhook API's throttle"],
      [DENY, 'apigateway:PATCH', `${api}/integrations/abc1234`, { ...onInstance }, "repoint the webhook API's integration"],
    ]),
    ...(deployed.log_groups || []).flatMap((g) =>
      ['logs:DeleteLogGroup', 'logs:PutRetentionPolicy', 'logs:DeleteMetricFilter', 'logs:PutSubscriptionFilter'].map((a) => [DENY, a, logGroup(g), { ...onInstance }, `log group ${g}`]),
    ),
    ...(deployed.alarms || []).flatMap((n) =>
      ['cloudwatch:DeleteAlarms', 'cloudwatch:DisableAlarmActions', 'cloudwatch:PutMetricAlarm'].map((a) => [DENY, a, alarm(n), { ...onInstance }, `alarm ${n}`]),
    ),
    ...(deployed.security_groups || []).flatMap((id) =>
      ['ec2:AuthorizeSecurityGroupIngress', 'ec2:ModifySecurityGroupRules', 'ec2:DeleteSecurityGroup'].map((a) => [DENY, a, sg(id), { ...onInstance }, `a pool's security group ${id}`]),
    ),
    ...['ec2:CreateSnapshot', 'ec2:DetachVolume', 'ec2:AttachVolume', 'ec2:DeleteVolume', 'ec2:ModifyVolume'].map((a) => [DENY, a, ec2('volume/vol-0bbbbbbbbbbbbbbb2'), { ...onInstance, ...tagged }, "another runner's root volume"]),
    [DENY, 'ec2:CreateSnapshots', otherRunner, { ...onInstance, ...tagged }, "snapshot another runner's disks"],
    ...['ec2:CopySnapshot', 'ec2:ModifySnapshotAttribute', 'ec2:CreateVolume'].map((a) => [DENY, a, `arn:${PART}:ec2:${R}::snapshot/snap-0bbbbbbbbbbbbbbb2`, { ...onInstance, ...tagged }, "a snapshot of a runner's volume"]),
    [DENY, 'ebs:GetSnapshotBlock', `arn:${PART}:ec2:${R}::snapshot/snap-0bbbbbbbbbbbbbbb2`, { ...onInstance, ...tagged }, "read a runner snapshot's blocks"],
    [DENY, 'ec2:CreateSnapshot', `arn:${PART}:ec2:${R}::snapshot/*`, { ...onInstance, [`aws:RequestTag/${TAG}`]: P }, 'a snapshot tagged as ours'],
    ...['ec2:ModifyNetworkInterfaceAttribute', 'ec2:DetachNetworkInterface', 'ec2:DeleteNetworkInterface', 'ec2:CreateNetworkInterfacePermission', 'ec2:AssignPrivateIpAddresses'].map((a) => [DENY, a, ec2('network-interface/eni-0bbbbbbbbbbbbbbb2'), { ...onInstance, ...tagged }, "another runner's network interface"]),
    [DENY, 'ssm:PutParameter', param(`/${P}/planted`), { ...onInstance }, "a new parameter under the deployment's path"],
    [DENY, 'ssm:LabelParameterVersion', config, { ...onInstance }, 'relabel the configuration'],
    ...(deployed.ami_parameters || []).flatMap((n) => [
      ...['ssm:PutParameter', 'ssm:LabelParameterVersion', 'ssm:DeleteParameter', 'ssm:AddTagsToResource'].map((a) => [DENY, a, param(n), { ...onInstance }, `the pools' AMI parameter ${n}`]),
      [ALLOW, 'ssm:GetParameter', param(n), { ...onInstance }, `read the AMI parameter ${n} (by design: extra policy)`],
    ]),
    ...guardrailPolicies.flatMap((arn) => ['iam:CreatePolicyVersion', 'iam:DeletePolicy', 'iam:SetDefaultPolicyVersion'].map((a) => [DENY, a, arn, { ...onInstance }, 'edit the guardrails'])),
    [DENY, 'iam:DetachRolePolicy', runnerRole, { ...onInstance }, 'detach the guardrails'],
    // By design: an extra policy's grants on the job's own resources stay.
    [ALLOW, 'ec2:CreateSnapshot', ec2('volume/vol-0eeeeeeeeeeeeeee5'), { ...onInstance }, "snapshot a job's own volume (by design: extra policy)"],
    [ALLOW, 'events:DisableRule', rule('team-nightly'), { ...onInstance }, "another team's rule (by design: extra policy)"],
    [ALLOW, 'logs:DeleteLogGroup', logGroup('/team/app'), { ...onInstance }, "another team's log group (by design: extra policy)"],
  ]
  return rows
}

// Rows every Lambda must fail: another deployment's parameters, instances, queues.
function otherDeploymentRows(fnName) {
  return [
    [DENY, 'ssm:GetParameter', other.config, {}, `${O}: configuration`],
    [DENY, 'ssm:GetParameter', other.credential, {}, `${O}: GitHub credential`],
    [DENY, 'ssm:GetParameter', other.webhook, {}, `${O}: webhook secret`],
    [DENY, 'ssm:PutParameter', other.jit, {}, `${O}: JIT parameter`],
    [DENY, 'ssm:DeleteParameter', other.jit, {}, `${O}: JIT parameter`],
    [DENY, 'ssm:AddTagsToResource', other.jit, { 'aws:TagKeys': ['spotrunner:instance-arn'] }, `${O}: JIT parameter`],
    [DENY, 'ec2:TerminateInstances', other.instance, instanceTags(O), `${O}: instance`],
    [DENY, 'ec2:CreateTags', other.instance, { ...instanceTags(O), 'aws:TagKeys': ['spotrunner:tainted'] }, `${O}: instance`],
    [DENY, 'ssm:SendCommand', other.instance, instanceTags(O), `${O}: instance`],
    [DENY, 'ec2:CreateFleet', instance('*'), { [`aws:RequestTag/${TAG}`]: O }, `${O}: launch as`],
    [DENY, 'sqs:SendMessage', other.jobs, {}, `${O}: jobs queue`],
    [DENY, 'sqs:SendMessage', other.bootstrap, {}, `${O}: bootstrap queue`],
    [DENY, 'sqs:ReceiveMessage', other.dlq, {}, `${O}: DLQ`],
    [DENY, 'sqs:ReceiveMessage', other.bootstrapDlq, {}, `${O}: bootstrap DLQ`],
    [DENY, 'sqs:ReceiveMessage', other.stopEvents, {}, `${O}: stop-events queue`],
    [DENY, 'sqs:ReceiveMessage', other.stopEventsDlq, {}, `${O}: stop-events DLQ`],
    [DENY, 'sqs:SendMessage', other.stopEvents, {}, `${O}: stop-events queue`],
    [DENY, 'dynamodb:GetItem', other.ledger, keys('job#4242'), `${O}: ledger`],
    [DENY, 'dynamodb:PutItem', other.ledger, keys('job#4242'), `${O}: ledger`],
    [DENY, 'logs:PutLogEvents', logStream(`${O}-${fnName}`), {}, `${O}: log group`],
    [DENY, 'iam:PassRole', other.runnerRole, { 'iam:PassedToService': 'ec2.amazonaws.com' }, `${O}: runner role`],
    ...(kmsKey ? [[DENY, 'kms:Decrypt', kmsKey, kmsCtx(other.credential), `${O}: decrypt credential`]] : []),
  ]
}

function lambdaRows(name) {
  const f = functions[name]
  const own = [
    [ALLOW, 'logs:PutLogEvents', logStream(f), {}, 'own log group'],
    [ALLOW, 'logs:CreateLogStream', logStream(f), {}, 'own log group'],
    [DENY, 'logs:PutLogEvents', logStream(functions[name === 'webhook' ? 'janitor' : 'webhook']), {}, "another function's log group"],
    [ALLOW, 'ssm:GetParameter', config, {}, 'configuration (cold start)'],
  ]
  const reads = {
    webhook: webhookSecrets,
    'create-runner': [credential],
    'stop-runner': [credential],
    'dlq-mover': [],
    janitor: [credential],
    recovery: [credential],
  }[name]
  for (const s of [credential, ...webhookSecrets]) {
    own.push([reads.includes(s) ? ALLOW : DENY, 'ssm:GetParameter', s, {}, reads.includes(s) ? 'secret it reads' : 'secret it does not read'])
  }
  if (kmsKey) {
    own.push([ALLOW, 'kms:Decrypt', kmsKey, kmsCtx(config), 'decrypt the configuration'])
    for (const s of [credential, ...webhookSecrets]) {
      own.push([reads.includes(s) ? ALLOW : DENY, 'kms:Decrypt', kmsKey, kmsCtx(s), reads.includes(s) ? 'decrypt a secret it reads' : 'decrypt a secret it does not read'])
    }
    own.push([DENY, 'kms:Decrypt', kmsKey, kmsCtx(ownJit), 'decrypt a JIT parameter'])
    own.push([DENY, 'kms:Decrypt', kmsKey, { 'kms:EncryptionContext:PARAMETER_ARN': config }, 'decrypt outside SSM'])
  }
  const specific = {
    webhook: [
      [ALLOW, 'ssm:GetParameters', config, {}, 'configuration and secrets in one call (cold start)'],
      ...webhookSecrets.map((s) => [ALLOW, 'ssm:GetParameters', s, {}, 'configuration and secrets in one call (cold start)']),
      [DENY, 'ssm:GetParameters', credential, {}, 'GitHub credential (GetParameters)'],
      [ALLOW, 'sqs:SendMessage', jobs, {}, 'enqueue a job'],
      [DENY, 'sqs:SendMessage', bootstrapQ, {}, 'bootstrap queue'],
      [DENY, 'sqs:SendMessage', stopEvents, {}, 'stop-events queue'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('job#4242'), 'job state'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('job#4242'), 'job state'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('gate#webhook-secrets'), 'the secrets-refresh gate (conditional put)'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('gate#webhook-secrets'), 'the secrets-refresh gate (a lost answer)'],
      [DENY, 'dynamodb:PutItem', ledger, keys('gate#other'), 'another gate item'],
      [DENY, 'dynamodb:PutItem', ledger, keys('runner#x'), 'a runner item'],
      [DENY, 'dynamodb:PutItem', ledger, keys('capacity#global'), 'a capacity counter'],
      [DENY, 'dynamodb:GetItem', ledger, keys('runner#x'), 'a runner item'],
      [DENY, 'dynamodb:UpdateItem', ledger, keys('job#4242'), 'UpdateItem'],
      [DENY, 'dynamodb:Scan', ledger, {}, 'Scan'],
      [DENY, 'ec2:DescribeInstances', '*', {}, 'EC2'],
    ],
    'create-runner': [
      ...['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:SendMessage'].flatMap((a) => [
        [ALLOW, a, jobs, {}, 'jobs queue'],
        [ALLOW, a, bootstrapQ, {}, 'bootstrap queue'],
      ]),
      [DENY, 'sqs:SendMessage', dlq, {}, 'DLQ'],
      [DENY, 'sqs:SendMessage', bootstrapDlq, {}, 'bootstrap DLQ'],
      [DENY, 'sqs:ReceiveMessage', stopEvents, {}, 'stop-events queue'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('job#4242'), 'claim: read the job'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('drain#cpu'), 'is the pool drained'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('state#runner-release'), 'the runner version and checksum to send'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('job#4242'), 'claim / update the job'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys(`runner#${P}_cpu-4242-1`), 'reserve / release (runner item)'],
      [ALLOW, 'dynamodb:UpdateItem', ledger, keys('capacity#pool#cpu'), 'reserve / release (pool counter)'],
      [ALLOW, 'dynamodb:UpdateItem', ledger, keys('capacity#global'), 'reserve / release (global weight)'],
      [DENY, 'dynamodb:PutItem', ledger, keys('capacity#global'), 'overwrite a counter'],
      [DENY, 'dynamodb:PutItem', ledger, keys('drain#cpu'), 'drain a pool'],
      [DENY, 'dynamodb:UpdateItem', ledger, keys('job#4242'), 'UpdateItem on a job'],
      [DENY, 'dynamodb:DeleteItem', ledger, keys('job#4242'), 'DeleteItem'],
      [DENY, 'dynamodb:Scan', ledger, {}, 'Scan'],
      [ALLOW, 'ssm:PutParameter', freshJit, { 'aws:RequestTag/spotrunner:deployment': P, 'aws:TagKeys': ['spotrunner:deployment', 'spotrunner:runner-name', 'spotrunner:job-id'] }, 'write a JIT parameter'],
      [ALLOW, 'ssm:AddTagsToResource', freshJit, { 'aws:TagKeys': ['spotrunner:deployment', 'spotrunner:runner-name', 'spotrunner:job-id'] }, 'tag it at PutParameter'],
      [ALLOW, 'ssm:AddTagsToResource', ownJit, { 'aws:TagKeys': ['spotrunner:instance-arn'] }, 'bind it to the instance'],
      [DENY, 'ssm:AddTagsToResource', ownJit, { 'aws:TagKeys': ['owner'] }, 'a foreign tag key'],
      [ALLOW, 'ssm:GetParameter', ownJit, {}, 'does it exist (no decryption)'],
      [ALLOW, 'ssm:DeleteParameter', ownJit, {}, 'undo'],
      [DENY, 'ssm:PutParameter', config, {}, 'rewrite the configuration'],
      [DENY, 'ssm:PutParameter', credential, {}, 'rewrite the credential'],
      [ALLOW, 'ssm:SendCommand', document, {}, 'bootstrap document'],
      [ALLOW, 'ssm:SendCommand', otherRunner, instanceTags(P), 'to our instance'],
      [DENY, 'ssm:SendCommand', instance('i-0ddddddddddddddd4'), {}, 'to an untagged instance'],
      [DENY, 'ssm:SendCommand', other.document, {}, `${O}'s document`],
      [ALLOW, 'ec2:CreateFleet', ec2('fleet/*'), {}, 'instant fleet'],
      [ALLOW, 'ec2:CreateFleet', instance('*'), launch(ourTemplate), 'fleet instance tagged as ours'],
      [DENY, 'ec2:CreateFleet', instance('*'), {}, 'fleet instance without the deployment tag'],
      [ALLOW, 'ec2:CreateFleet', ourTemplate, {}, 'our launch template'],
      [DENY, 'ec2:CreateFleet', foreignTemplate, {}, 'a foreign launch template'],
      [ALLOW, 'ec2:CreateFleet', ec2('subnet/subnet-0abc'), {}, 'subnet override'],
      [ALLOW, 'ec2:RunInstances', instance('*'), launch(ourTemplate), 'instance from our template, tagged'],
      [DENY, 'ec2:RunInstances', instance('*'), { [`aws:RequestTag/${TAG}`]: P }, 'instance without a launch template'],
      [DENY, 'ec2:RunInstances', instance('*'), launch(foreignTemplate), 'instance from a foreign launch template'],
      [DENY, 'ec2:RunInstances', instance('*'), launch(ourTemplate, O), `instance tagged as ${O}`],
      [ALLOW, 'ec2:RunInstances', `arn:${PART}:ec2:${R}::image/ami-12c6146b`, { 'ec2:LaunchTemplate': ourTemplate, 'ec2:IsLaunchTemplateResource': 'true' }, "the template's image"],
      [DENY, 'ec2:RunInstances', `arn:${PART}:ec2:${R}::image/ami-0evil`, { 'ec2:LaunchTemplate': ourTemplate, 'ec2:IsLaunchTemplateResource': 'false' }, 'an image overriding the template'],
      [DENY, 'ec2:RunInstances', `arn:${PART}:ec2:${R}::image/ami-12c6146b`, {}, 'an image without a launch template'],
      ...['subnet/subnet-0abc', 'security-group/sg-0abc', 'network-interface/*', 'volume/*'].map((r) => [ALLOW, 'ec2:RunInstances', ec2(r), { 'ec2:LaunchTemplate': ourTemplate }, 'launch from our template']),
      [DENY, 'ec2:RunInstances', ec2('subnet/subnet-0abc'), { 'ec2:LaunchTemplate': foreignTemplate }, 'launch from a foreign template'],
      [ALLOW, 'ec2:RunInstances', ourTemplate, { 'ec2:LaunchTemplate': ourTemplate }, 'our launch template'],
      [ALLOW, 'ec2:RunInstances', ec2('spot-instances-request/*'), {}, 'spot request'],
      [ALLOW, 'ec2:CreateTags', instance('*'), { 'ec2:CreateAction': 'CreateFleet', [`aws:RequestTag/${TAG}`]: P }, 'tags at launch'],
      [DENY, 'ec2:CreateTags', otherRunner, { [`aws:RequestTag/${TAG}`]: P, ...instanceTags(P) }, 'tags after launch'],
      [ALLOW, 'ec2:TerminateInstances', otherRunner, instanceTags(P), 'terminate ours (boot timeout)'],
      [DENY, 'ec2:TerminateInstances', instance('i-0ddddddddddddddd4'), {}, 'terminate untagged'],
      [ALLOW, 'ec2:DescribeInstances', '*', {}, 'find a launch by its tags (ClientToken mismatch)'],
      [ALLOW, 'ssm:ListCommands', '*', {}, 'find a bootstrap command an earlier step sent'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('health#cpu'), "the pool's circuit breaker"],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#line/cpu'), "enter / leave the pool's waiting line"],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('state#rerun/900'), "is this job an interrupted job's re-run"],
      [DENY, 'dynamodb:PutItem', ledger, keys('state#rerun/900'), 're-run markers (stop-runner, janitor)'],
      [DENY, 'dynamodb:PutItem', ledger, keys('state#redelivery'), "another task's state"],
      ...pools.map((p) => [ALLOW, 'iam:PassRole', runnerRoleOf(p), { 'iam:PassedToService': 'ec2.amazonaws.com' }, `pool ${p}'s runner role to EC2`]),
      [DENY, 'iam:PassRole', runnerRoleOf(pools[0]), { 'iam:PassedToService': 'lambda.amazonaws.com' }, 'runner role elsewhere'],
      [DENY, 'iam:PassRole', out.role_arns.janitor, { 'iam:PassedToService': 'ec2.amazonaws.com' }, 'another role'],
      [ALLOW, 'iam:CreateServiceLinkedRole', `arn:${PART}:iam::${A}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot`, { 'iam:AWSServiceName': 'spot.amazonaws.com' }, 'spot service-linked role'],
      ...(kmsKey
        ? [
            [ALLOW, 'kms:Encrypt', kmsKey, kmsCtx(freshJit), 'encrypt a JIT parameter'],
            [ALLOW, 'kms:GenerateDataKey', kmsKey, kmsCtx(freshJit), 'encrypt a JIT parameter (Advanced tier)'],
            [DENY, 'kms:Encrypt', kmsKey, kmsCtx(credential), 'encrypt the credential'],
          ]
        : []),
    ],
    'stop-runner': [
      [ALLOW, 'sqs:ReceiveMessage', stopEvents, {}, 'stop-events queue (event source mapping)'],
      [ALLOW, 'sqs:DeleteMessage', stopEvents, {}, 'stop-events queue (event source mapping)'],
      [ALLOW, 'sqs:GetQueueAttributes', stopEvents, {}, 'stop-events queue (event source mapping)'],
      [DENY, 'sqs:SendMessage', stopEvents, {}, 'send a stop event (not called)'],
      [DENY, 'sqs:ChangeMessageVisibility', stopEvents, {}, 'change visibility (not called)'],
      [DENY, 'sqs:ReceiveMessage', stopEventsDlq, {}, 'stop-events DLQ'],
      [DENY, 'sqs:ReceiveMessage', jobs, {}, 'jobs queue'],
      [ALLOW, 'sqs:SendMessage', jobs, {}, 'requeue an interrupted job'],
      [DENY, 'sqs:SendMessage', bootstrapQ, {}, 'bootstrap queue'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys(`runner#${P}_cpu-4242-1`), 'read the runner'],
      [ALLOW, 'dynamodb:Scan', ledger, {}, 'find the runner of a forgotten instance'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('job#4242'), 'job state'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys(`runner#${P}_cpu-4242-1`), 'release (runner item)'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('health#cpu'), "the pool's circuit breaker"],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#line/cpu'), "wake the pool's waiting line"],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#rerun/900'), "re-run an interrupted job (the run's marker)"],
      [DENY, 'dynamodb:PutItem', ledger, keys('state#sweep'), "another task's state"],
      [ALLOW, 'dynamodb:UpdateItem', ledger, keys('capacity#pool#cpu'), 'release (counter)'],
      [DENY, 'dynamodb:PutItem', ledger, keys('capacity#global'), 'overwrite a counter'],
      [DENY, 'dynamodb:DeleteItem', ledger, keys('job#4242'), 'DeleteItem'],
      [ALLOW, 'ssm:DeleteParameter', ownJit, {}, 'delete the JIT parameter'],
      [DENY, 'ssm:GetParameter', ownJit, {}, 'read a JIT parameter (not called)'],
      [ALLOW, 'ec2:TerminateInstances', otherRunner, instanceTags(P), 'terminate ours'],
      [DENY, 'ec2:TerminateInstances', instance('i-0ddddddddddddddd4'), {}, 'terminate untagged'],
      [ALLOW, 'ec2:DescribeInstances', '*', {}, 'describe'],
      [DENY, 'ssm:SendCommand', document, {}, 'SendCommand'],
      [DENY, 'ec2:CreateFleet', ec2('fleet/*'), {}, 'launch'],
    ],
    'dlq-mover': [
      ...[
        [dlq, 'DLQ'],
        [bootstrapDlq, 'bootstrap DLQ'],
        [stopEventsDlq, 'stop-events DLQ'],
      ].flatMap(([q, what]) => [
        [ALLOW, 'sqs:ReceiveMessage', q, {}, what],
        [ALLOW, 'sqs:DeleteMessage', q, {}, `${what} (DeleteMessageBatch)`],
        [ALLOW, 'sqs:GetQueueAttributes', q, {}, `${what} depth`],
        [DENY, 'sqs:SendMessage', q, {}, what],
      ]),
      [ALLOW, 'sqs:SendMessage', jobs, {}, 'move to the jobs queue'],
      [ALLOW, 'sqs:SendMessage', bootstrapQ, {}, 'move to the bootstrap queue'],
      [ALLOW, 'sqs:SendMessage', stopEvents, {}, 'move to the stop-events queue'],
      [DENY, 'sqs:ReceiveMessage', jobs, {}, 'jobs queue'],
      [DENY, 'sqs:ReceiveMessage', bootstrapQ, {}, 'bootstrap queue'],
      [DENY, 'sqs:ReceiveMessage', stopEvents, {}, 'stop-events queue'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('job#4242'), 'is the job finished'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys(`runner#${P}_cpu-4242-1`), "is a bootstrap step's runner still waiting"],
      [DENY, 'dynamodb:GetItem', ledger, keys('capacity#global'), 'a capacity counter'],
      [DENY, 'dynamodb:PutItem', ledger, keys('job#4242'), 'write (not called)'],
      [DENY, 'dynamodb:Scan', ledger, {}, 'Scan'],
    ],
    janitor: [
      [ALLOW, 'sqs:SendMessage', jobs, {}, 'requeue'],
      [DENY, 'sqs:SendMessage', stopEvents, {}, 'stop-events queue'],
      [ALLOW, 'dynamodb:Scan', ledger, {}, 'snapshot'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys(`runner#${P}_cpu-4242-1`), 're-read before acting'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('job#4242'), 'job state'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys(`runner#${P}_cpu-4242-1`), 'runner state'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('health#cpu'), "the pool's circuit breaker (a runner that never started)"],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#line/cpu'), "wake every pool's waiting line"],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#rerun/900'), 're-run interrupted jobs (the run marker)'],
      [DENY, 'dynamodb:PutItem', ledger, keys('capacity#global'), 'overwrite a counter'],
      [ALLOW, 'dynamodb:UpdateItem', ledger, keys('capacity#global'), 'capacity repair (conditional)'],
      [ALLOW, 'dynamodb:UpdateItem', ledger, keys('capacity#pool#cpu'), 'release / capacity repair (conditional)'],
      [DENY, 'dynamodb:DeleteItem', ledger, keys('capacity#pool#gone'), 'delete a pool counter'],
      [DENY, 'dynamodb:DeleteItem', ledger, keys('job#4242'), 'delete a job'],
      [DENY, 'dynamodb:DeleteItem', ledger, keys('capacity#global'), 'delete the global counter'],
      [DENY, 'dynamodb:PutItem', ledger, keys('drain#cpu'), 'drain a pool'],
      [ALLOW, 'ssm:DeleteParameter', ownJit, {}, 'delete a leaked JIT parameter'],
      [ALLOW, 'ssm:DescribeParameters', '*', {}, 'list JIT parameters'],
      [DENY, 'ssm:GetParameter', ownJit, {}, 'read a JIT parameter (not called)'],
      [ALLOW, 'ec2:TerminateInstances', otherRunner, instanceTags(P), 'terminate ours'],
      [ALLOW, 'ec2:CreateTags', otherRunner, { ...instanceTags(P), 'aws:TagKeys': ['spotrunner:tainted'] }, 'taint ours'],
      [DENY, 'ec2:CreateTags', otherRunner, { ...instanceTags(P), 'aws:TagKeys': [TAG] }, 'retag ours'],
      [DENY, 'ec2:CreateTags', instance('i-0ddddddddddddddd4'), { 'aws:TagKeys': ['spotrunner:tainted'] }, 'taint untagged'],
      [ALLOW, 'ec2:DescribeInstances', '*', {}, 'describe'],
      [DENY, 'ssm:SendCommand', document, {}, 'SendCommand'],
      [DENY, 'ec2:CreateFleet', ec2('fleet/*'), {}, 'launch'],
    ],
    recovery: [
      [ALLOW, 'sqs:SendMessage', jobs, {}, 'the sweep enqueues a job never delivered'],
      [DENY, 'sqs:ReceiveMessage', jobs, {}, 'jobs queue'],
      [DENY, 'sqs:SendMessage', bootstrapQ, {}, 'bootstrap queue'],
      [DENY, 'sqs:SendMessage', stopEvents, {}, 'stop-events queue'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('job#4242'), 'is the job known'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('drain#cpu'), 'is the pool drained'],
      [ALLOW, 'dynamodb:GetItem', ledger, keys('state#redelivery'), 'the checkpoint'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#redelivery'), 'write the checkpoint'],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#sweep'), "write the sweep's place"],
      [ALLOW, 'dynamodb:PutItem', ledger, keys('state#runner-release'), 'record the runner release'],
      [ALLOW, 's3:GetObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.329.0.tar.gz.sha256'), {}, 'read a checksum sidecar'],
      [ALLOW, 's3:PutObject', s3obj(bucket, 'runner-cache/actions-runner-linux-arm64-2.329.0.tar.gz'), {}, 'store a verified tarball'],
      [ALLOW, 's3:PutObject', s3obj(bucket, 'runner-cache/actions-runner-linux-arm64-2.329.0.tar.gz.sha256'), {}, 'store its sidecar'],
      [ALLOW, 's3:ListBucket', `arn:${PART}:s3:::${bucket}`, {}, 'a missing cache key is a 404'],
      [DENY, 's3:PutObject', s3obj(bucket, out.bootstrap_script_key), {}, 'overwrite bootstrap.sh'],
      [DENY, 's3:PutObject', s3obj(bucket, 'startup/cpu.sh'), {}, 'overwrite a startup script'],
      [DENY, 's3:GetObject', s3obj(bucket, 'startup/cpu.sh'), {}, 'read a startup script'],
      [DENY, 's3:DeleteObject', s3obj(bucket, 'runner-cache/actions-runner-linux-x64-2.329.0.tar.gz'), {}, 'delete a cached tarball'],
      [DENY, 'dynamodb:PutItem', ledger, keys('job#4242'), 'write a job (the claim is create-runner\'s)'],
      [DENY, 'dynamodb:PutItem', ledger, keys('drain#cpu'), 'drain a pool'],
      [DENY, 'dynamodb:GetItem', ledger, keys(`runner#${P}_cpu-4242-1`), 'read a runner'],
      [DENY, 'dynamodb:UpdateItem', ledger, keys('capacity#global'), 'touch a counter'],
      [DENY, 'dynamodb:Scan', ledger, {}, 'Scan'],
      [DENY, 'ssm:DeleteParameter', ownJit, {}, 'delete a JIT parameter'],
      [DENY, 'ssm:GetParameter', ownJit, {}, 'read a JIT parameter'],
      [DENY, 'ec2:TerminateInstances', otherRunner, instanceTags(P), 'terminate'],
      [DENY, 'ec2:CreateFleet', ec2('fleet/*'), {}, 'launch'],
      [DENY, 'ssm:SendCommand', document, {}, 'SendCommand'],
    ],
  }[name]
  return [...own, ...specific, ...otherDeploymentRows(name)]
}

// --- evaluation -----------------------------------------------------------------------
function policiesOf(roleDump) {
  return [
    ...roleDump.inline.map((p) => ({ name: `inline:${p.name}`, policy: p.document })),
    ...roleDump.attached.map((p) => ({ name: `attached:${p.name}`, policy: p.document })),
  ]
}

function statementId(s) {
  return `${s.policyId}${s.statement?.Sid ? `#${s.statement.Sid}` : ''}`
}

// The key policy of a KMS key: the deployed one for the parameter key; for any
// other key (aws/ssm) the default key policy (IAM policies of the account decide).
const defaultKeyPolicy = {
  Version: '2012-10-17',
  Statement: [{ Effect: 'Allow', Principal: { AWS: `arn:${PART}:iam::${A}:root` }, Action: 'kms:*', Resource: '*' }],
}
const keyPolicy = (keyArn) => (dump.key_policies || {})[keyArn] || defaultKeyPolicy

// The deployed queue policies by queue ARN (the stop-events queue and its DLQ).
const queuePolicies = Object.fromEntries(Object.entries(dump.queue_policies || {}).map(([url, p]) => [queueArn(url), p]))
const resourcePolicyOf = (action, resource) =>
  action.startsWith('kms:') ? keyPolicy(resource) : action.startsWith('sqs:') ? queuePolicies[resource] : undefined

// The evaluator validates context keys against the service reference and
// matches a templated key only when its template follows a '/'
// (aws:ResourceTag/<key>); it drops kms:EncryptionContext:<key> from the
// request. So, in the evaluator's copy of the policies and in the request
// alike, kms:EncryptionContext:<key> is renamed to a '/'-templated key no
// policy uses otherwise: the same string comparison, a key it keeps.
const KMS_CONTEXT = /kms:EncryptionContext:([A-Za-z0-9_.-]+)/g
const KMS_CONTEXT_ALIAS = 'aws:RequestTag/spotrunner-matrix-kms-encryption-context.'
const aliasKmsContext = (value) => JSON.parse(JSON.stringify(value).replace(KMS_CONTEXT, `${KMS_CONTEXT_ALIAS}$1`))

// The evaluator cannot parse API Gateway's resource types (account-less ARNs
// listed two per type in the service reference: "no.resource.types"). For
// those rows the decision is static: an explicit Deny whose Action and
// Resource patterns match the request and which has no Condition.
const STATIC_SERVICES = ['apigateway:']
function staticDecision(policies, action, resource) {
  const matches = (patterns, value) => [].concat(patterns || []).some((p) => wildcardToRegExp(p.toLowerCase()).test(value.toLowerCase()))
  const deny = []
  for (const { name, policy } of policies) {
    for (const st of [].concat(policy.Statement || [])) {
      if (st.Effect !== 'Deny' || st.Condition || st.NotAction || st.NotResource) continue
      if (matches(st.Action, action) && matches(st.Resource, resource)) deny.push(`${name}#${st.Sid || '?'}`)
    }
  }
  return deny.length
    ? { decision: DENY, overall: 'ExplicitlyDenied', why: `(static) denied by ${deny.join(', ')}`, ignored: [] }
    : { decision: ALLOW, overall: 'Allowed', why: '(static: API Gateway ARNs) no unconditional explicit Deny names it', ignored: [] }
}

async function evaluate(principal, policies, [expect, action, resource, context]) {
  if (STATIC_SERVICES.some((s) => action.startsWith(s))) return staticDecision(policies, action, resource)
  if (Object.keys(context).some((k) => k.startsWith(KMS_CONTEXT_ALIAS)) || JSON.stringify(policies).includes(KMS_CONTEXT_ALIAS)) {
    throw new Error(`${KMS_CONTEXT_ALIAS} is reserved for the matrix`)
  }
  const sim = {
    identityPolicies: aliasKmsContext(policies),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: resourcePolicyOf(action, resource),
    request: {
      action,
      principal,
      resource: { accountId: A, resource },
      contextVariables: aliasKmsContext(context),
    },
  }
  const res = await runSimulation(sim, {})
  if (res.resultType === 'error') {
    return { decision: 'ERROR', why: JSON.stringify(res.errors) }
  }
  const single = res.resultType === 'single' ? res.result : res.results?.[0]
  const ignored = single?.ignoredContextKeys || []
  const overall = res.overallResult
  const decision = overall === 'Allowed' ? ALLOW : DENY
  const ia = single?.analysis?.identityAnalysis
  const ra = single?.analysis?.resourceAnalysis
  let why = ''
  if (decision !== expect) {
    if (decision === ALLOW) {
      why = `allowed by ${[...(ia?.allowStatements || []), ...(ra?.allowStatements || [])].map(statementId).join(', ')}`
    } else if (overall === 'ExplicitlyDenied') {
      why = `denied by ${(ia?.denyStatements || []).map(statementId).join(', ')}`
    } else {
      const near = (ia?.unmatchedStatements || []).filter((s) => s.statement.Effect === 'Allow' && s.actionMatch && s.resourceMatch)
      why = 'no statement allows it' + (near.length ? ` (conditions not met: ${near.map(statementId).join(', ')})` : '')
    }
  }
  return { decision, overall, why, ignored }
}

// explicitDeny: a DENY row passes only when an explicit Deny decides it.
async function runMatrix(title, principal, policies, rows, { quiet = false, explicitDeny = false } = {}) {
  const failures = []
  if (!quiet) console.log(`\n== ${title}`)
  for (const row of rows) {
    // row[5]: a principal other than the matrix's (the queue-policy rows).
    const [expect, action, resource, , note, rowPrincipal] = row
    const r = await evaluate(rowPrincipal || principal, policies, row)
    let ok = r.decision === expect
    if (ok && explicitDeny && expect === DENY && r.overall !== 'ExplicitlyDenied') {
      ok = false
      r.decision = 'DENY'
      r.why = `${r.overall}, not by an explicit Deny`
    }
    if (!ok) failures.push({ row, r })
    if (!quiet || !ok) {
      // Quiet (a regression check): these rows are expected to fail.
      const verdict = quiet ? '   caught' : ok ? 'PASS' : 'FAIL'
      console.log(`${verdict}  ${r.decision.padEnd(5)} (expect ${expect.padEnd(5)})  ${rowPrincipal ? `${rowPrincipal}: ` : ''}${action}  ${resource}  [${note}]`)
      if (!ok) console.log(`${quiet ? '   ' : ''}        ${r.why}`)
      if (verbose && r.ignored?.length) console.log(`        ignored context keys: ${r.ignored.join(', ')}`)
    }
  }
  if (!quiet) console.log(`-- ${title}: ${rows.length - failures.length}/${rows.length} as expected`)
  return failures
}

// --- static: exact identity --------------------------------------------------------------
function wildcardToRegExp(pattern) {
  const esc = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')
  return new RegExp(`^${esc}$`)
}

function exactIdentityCheck() {
  const samples = [
    param(`/${O}/jit/${O}_cpu-1-1`),
    param(`/${O}/config`),
    param(`/${O}/github/pat`),
    param(`/${O}/github/app-private-key`),
    param(`/${O}/webhook/secret`),
    paramPath(`/${O}`),
    other.jobs,
    other.bootstrap,
    other.dlq,
    other.bootstrapDlq,
    other.stopEvents,
    other.stopEventsDlq,
    other.stopRule,
    other.ledger,
    `${other.ledger}/index/x`,
    other.document,
    other.runnerRole,
    `arn:${PART}:iam::${A}:instance-profile/${O}-runner`,
    ...Object.keys(functions).flatMap((f) => [role(`${O}-${f}`), fn(`${O}-${f}`), `${fn(`${O}-${f}`)}:1`, logStream(`${O}-${f}`)]),
    `arn:${PART}:s3:::${O}-runner-${A}-${R}`,
    s3obj(`${O}-runner-${A}-${R}`, 'bootstrap.sh'),
    s3obj(`${O}-runner-${A}-${R}`, 'startup/cpu.sh'),
    s3obj(`${O}-runner-${A}-${R}`, 'runner-cache/actions-runner-linux-x64-2.329.0.tar.gz'),
    `arn:${PART}:events:${R}:${A}:rule/${O}-janitor-schedule`,
    `arn:${PART}:cloudwatch:${R}:${A}:alarm:${O}-dlq-not-empty`,
    `arn:${PART}:cloudwatch:${R}:${A}:alarm:${O}-webhook-bad-signatures`,
    `arn:${PART}:logs:${R}:${A}:log-group:/aws/apigateway/${O}-webhook`,
    `arn:${PART}:logs:${R}:${A}:log-group:/aws/lambda/${O}-webhook`,
    `arn:${PART}:iam::${A}:policy/${O}-runner-guardrails-plane`,
    `arn:${PART}:iam::${A}:policy/${O}-runner-guardrails-infra`,
    ...pools.flatMap((p) => [role(`${O}-runner-${p}`), `arn:${PART}:iam::${A}:instance-profile/${O}-runner-${p}`]),
  ]
  const problems = []
  let patterns = 0
  for (const [roleName, r] of Object.entries(dump.roles)) {
    for (const { name, policy } of policiesOf(r)) {
      const stmts = Array.isArray(policy.Statement) ? policy.Statement : [policy.Statement]
      for (const s of stmts) {
        const res = [].concat(s.Resource || [], s.NotResource || [])
        for (const pattern of res) {
          if (!pattern.includes(P) || pattern.includes('${')) continue
          patterns++
          const re = wildcardToRegExp(pattern)
          for (const sample of samples) {
            if (re.test(sample)) problems.push(`${roleName} ${name}#${s.Sid || '?'}: ${pattern} matches ${sample}`)
          }
        }
      }
    }
  }
  console.log(`\n== exact identity: ${patterns} resource patterns naming ${P} against ${samples.length} resources of ${O}`)
  for (const p of problems) console.log(`FAIL  ${p}`)
  if (!problems.length) console.log(`PASS  no pattern of ${P} matches a resource of ${O}`)
  return problems
}

// --- main ---------------------------------------------------------------------------------
const expectedRoles = [...new Set(pools.map(runnerKey)), 'webhook', 'create-runner', 'stop-runner', 'dlq-mover', 'janitor', 'recovery']
for (const r of expectedRoles) {
  if (!dump.roles[r]) {
    console.error(`matrix: role ${r} missing from ${file}`)
    process.exit(2)
  }
}
const principalOf = (r) => `arn:${PART}:sts::${A}:assumed-role/${dump.roles[r].name}/${r.startsWith('runner') ? 'i-0aaaaaaaaaaaaaaa1' : dump.roles[r].name}`

let failed = 0
let total = 0
for (const pool of pools) {
  forPool(pool)
  const rows = runnerRows()
  const title = `pool ${pool}'s runner role ${dump.roles[runnerKey(pool)].name} (as deployed, credential binding ${bindingOf(pool)})`
  failed += (await runMatrix(title, principalOf(runnerKey(pool)), policiesOf(dump.roles[runnerKey(pool)]), rows)).length
  total += rows.length
}
forPool(pools[0])
const runnerPolicies = policiesOf(dump.roles[runnerKey(pools[0])])
const rRows = runnerRows()
for (const name of ['webhook', 'create-runner', 'stop-runner', 'dlq-mover', 'janitor', 'recovery']) {
  const rows = lambdaRows(name)
  failed += (await runMatrix(`${name} role (as deployed)`, principalOf(name), policiesOf(dump.roles[name]), rows)).length
  total += rows.length
}

// Who may send to the stop-events queue and its DLQ: EventBridge, for this
// deployment's stop-runner rules only (the queue policies, no identity policy).
function queuePolicyRows() {
  const EVENTS = 'events.amazonaws.com'
  const from = (ruleArn) => ({ 'aws:SourceArn': ruleArn, 'aws:SourceAccount': A })
  return [stopEvents, stopEventsDlq].flatMap((q) => {
    const what = q === stopEvents ? 'stop-events queue' : 'stop-events DLQ'
    return [
      ...stopRules.map((r) => [ALLOW, 'sqs:SendMessage', q, from(r), `${what}: from ${r.split('/').pop()}`, EVENTS]),
      [DENY, 'sqs:SendMessage', q, from(rule(`${P}-janitor-schedule`)), `${what}: from another rule of ours`, EVENTS],
      [DENY, 'sqs:SendMessage', q, from(other.stopRule), `${what}: from ${O}'s rule`, EVENTS],
      [DENY, 'sqs:SendMessage', q, {}, `${what}: EventBridge without a source rule`, EVENTS],
      [DENY, 'sqs:SendMessage', q, from(stopRules[0]), `${what}: another service`, 'sns.amazonaws.com'],
      [DENY, 'sqs:ReceiveMessage', q, from(stopRules[0]), `${what}: EventBridge reading it`, EVENTS],
    ]
  })
}
const qRows = queuePolicyRows()
for (const q of [stopEvents, stopEventsDlq]) {
  if (!queuePolicies[q]) {
    console.error(`matrix: no queue policy for ${q} in ${file}`)
    process.exit(2)
  }
}
failed += (await runMatrix('stop-events queue policies (as deployed)', 'events.amazonaws.com', [], qRows)).length
total += qRows.length

for (const pool of pools) {
  forPool(pool)
  const rows = adminRows()
  failed += (
    await runMatrix(
      `pool ${pool}'s runner role + AdministratorAccess as an extra policy: the guardrails hold`,
      principalOf(runnerKey(pool)),
      [...policiesOf(dump.roles[runnerKey(pool)]), { name: 'attached:AdministratorAccess', policy: dump.reference_policies.AdministratorAccess }],
      rows,
      { explicitDeny: true },
    )
  ).length
  total += rows.length
}
forPool(pools[0])
const aRows = adminRows()

// Regressions the matrix must catch (each must produce at least one FAIL).
const regressions = [
  {
    title: 'REGRESSION: runner role with AmazonSSMManagedInstanceCore re-attached',
    policies: [...runnerPolicies, { name: 'attached:AmazonSSMManagedInstanceCore', policy: dump.reference_policies.AmazonSSMManagedInstanceCore }],
    mustFail: ['unrelated untagged parameter elsewhere'],
  },
  {
    title: 'REGRESSION: runner grant keyed on ${ec2:InstanceID} (the old policy)',
    policies: runnerPolicies.map((p) => ({
      name: p.name,
      policy: p.name.includes('-guardrails') ? p.policy : JSON.parse(JSON.stringify(p.policy).replaceAll('${ec2:SourceInstanceARN}', '${ec2:InstanceID}')),
    })),
    mustFail: ['own JIT parameter'],
  },
  {
    title: 'REGRESSION: runner role without its guardrail policy, AdministratorAccess attached',
    policies: [
      ...runnerPolicies.filter((p) => !p.name.includes('-guardrails')),
      { name: 'attached:AdministratorAccess', policy: dump.reference_policies.AdministratorAccess },
    ],
    rows: aRows,
    mustFail: ['GitHub credential', 'configuration document', 'overwrite bootstrap.sh'],
  },
  {
    title: 'REGRESSION: runner role without the shared guardrails-watch policy, AdministratorAccess attached',
    policies: [
      ...runnerPolicies.filter((p) => !p.name.includes('-guardrails-watch')),
      { name: 'attached:AdministratorAccess', policy: dump.reference_policies.AdministratorAccess },
    ],
    rows: aRows,
    mustFail: [`alarm ${P}-webhook-bad-signatures`, 'stop a queue (event source mapping)', `rule ${P}-janitor-schedule`],
  },
]
for (const reg of regressions) {
  console.log(`\n== ${reg.title}: must fail the ${reg.rows ? 'guardrail' : 'runner'} matrix`)
  const failures = await runMatrix(reg.title, principalOf(runnerKey(pools[0])), reg.policies, reg.rows || rRows, { quiet: true })
  const notes = new Set(failures.map((f) => f.row[4]))
  const missing = reg.mustFail.filter((n) => !notes.has(n))
  total++
  if (failures.length && !missing.length) {
    console.log(`PASS  caught: ${failures.length} row(s) fail, including [${reg.mustFail.join('], [')}]`)
  } else {
    failed++
    console.log(`FAIL  not caught: ${failures.length} row(s) fail; expected failures missing: ${missing.join(', ') || '(none failed)'}`)
  }
}

const identity = exactIdentityCheck()
total++
if (identity.length) failed++

console.log(`\n== IAM matrix: ${total - failed}/${total} checks as expected${failed ? `, ${failed} FAILED` : ''}`)
process.exit(failed ? 1 : 0)
