//! Lambda quotas and LMI limits that requests are checked against.

/// Largest request body for CreateFunction/UpdateFunctionCode (a 50 MB zip, base64-encoded).
pub const MAX_CODE_REQUEST_BYTES: usize = 69_905_067;
/// Largest zip accepted by direct upload.
pub const MAX_ZIP_BYTES: usize = 52_428_800;
/// Largest unzipped package.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;
/// Largest synchronous invoke request and response payload.
pub const MAX_SYNC_PAYLOAD_BYTES: usize = 6_291_456;
/// Largest asynchronous invoke payload (`InvocationType=Event`, `InvokeAsync`).
pub const MAX_ASYNC_PAYLOAD_BYTES: usize = 1_048_576;
/// Largest body of any other control-plane request.
pub const MAX_CONTROL_REQUEST_BYTES: usize = 6_291_456;
/// Capacity providers per account.
pub const MAX_CAPACITY_PROVIDERS: usize = 1_000;
/// Function versions per capacity provider (not increasable on AWS).
pub const MAX_VERSIONS_PER_CAPACITY_PROVIDER: usize = 100;
/// LMI minimum memory.
pub const LMI_MIN_MEMORY_MB: u32 = 2_048;
pub const MAX_MEMORY_MB: u32 = 32_768;
pub const MIN_MEMORY_MB: u32 = 128;
/// Longest function timeout, and the longest a synchronous invoke waits.
pub const MAX_TIMEOUT_SECS: u32 = 900;
/// Longest timeout of a capacity-provider function: asynchronous and event source mapping
/// invokes may run this long (synchronous ones still end at [`MAX_TIMEOUT_SECS`]).
pub const MAX_LMI_TIMEOUT_SECS: u32 = 5_400;
pub const DEFAULT_MAX_VCPU: u32 = 400;
pub const DEFAULT_MIN_ENVIRONMENTS: u32 = 3;
pub const MAX_ENVIRONMENTS: u32 = 15_000;
