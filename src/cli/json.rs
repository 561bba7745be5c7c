//! The API's JSON (the canonical protobuf mapping, as grpcurl shows it), both
//! ways: what `--output json` prints, and what `-f FILE` and `--jobs` read.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

use super::fail::Failure;

fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(crate::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built with the service decodes")
    })
}

/// `message` (of the API type `name`, e.g. `jobqueue.v1.Job`) as its JSON.
pub fn to_json<M: Message>(name: &str, message: &M) -> serde_json::Value {
    let descriptor = pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in the API's descriptors"));
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .expect("a message decodes as its own type");
    dynamic
        .serialize_with_options(
            serde_json::value::Serializer,
            &SerializeOptions::new().skip_default_fields(true),
        )
        .expect("a message serializes as JSON")
}

/// Prints `message` as one line of JSON.
pub fn print<M: Message>(name: &str, message: &M) {
    println!("{}", to_json(name, message));
}

/// A message of the API type `name` from its JSON; `what` names the source in
/// the error.
pub fn from_json<M: Message + Default>(
    name: &str,
    json: serde_json::Value,
    what: &str,
) -> Result<M, Failure> {
    let descriptor = pool()
        .get_message_by_name(name)
        .unwrap_or_else(|| panic!("{name} is in the API's descriptors"));
    let dynamic = DynamicMessage::deserialize(descriptor, json)
        .map_err(|e| Failure::usage(format!("{what}: not a {name}: {e}")))?;
    M::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| Failure::usage(format!("{what}: {e}")))
}

/// The text of a file, or of standard input for `-`.
pub fn read_source(path: &Path, flag: &str) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| Failure::usage(format!("{flag} {}: {e}", path.display())))?;
    Ok(text)
}

/// A message of type `name` from a JSON or YAML file (YAML is JSON's superset
/// here: the same field names).
pub fn from_file<M: Message + Default>(name: &str, path: &Path, flag: &str) -> Result<M, Failure> {
    let text = read_source(path, flag)?;
    let what = format!("{flag} {}", path.display());
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(json) => json,
        Err(_) => serde_yaml::from_str(&text)
            .map_err(|e| Failure::usage(format!("{what}: neither JSON nor YAML: {e}")))?,
    };
    from_json(name, json, &what)
}
