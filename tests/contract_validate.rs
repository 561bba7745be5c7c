//! Values checked against contracts at run time: where they break them, and
//! schemas compiled once.

use jobqueue::contract::registry::{Documents, Part};
use jobqueue::contract::validate::{Compiled, violations};
use serde_json::json;

#[test]
fn a_violation_says_where_in_the_value_and_in_the_schema() {
    let schema = json!({
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}
        }}}
    });
    let compiled = Compiled::default();
    let key = ("orders".to_string(), 1, Part::Output);
    let validator = compiled.get(&key, &schema, &Documents::default()).unwrap();
    assert!(violations(&validator, &json!({"items": [{"id": 1}]}), 10).is_empty());
    let found = violations(
        &validator,
        &json!({"items": [{"id": 1}, {"id": "two"}]}),
        10,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].instance_path, "/items/1/id");
    assert_eq!(
        found[0].schema_path,
        "/properties/items/items/properties/id/type"
    );
    assert!(found[0].message.contains("\"two\""), "{found:?}");
    let missing = violations(&validator, &json!({}), 10);
    assert_eq!(missing[0].instance_path, "/");
    assert!(missing[0].message.contains("items"), "{missing:?}");
    // At most as many as asked.
    let many = violations(
        &validator,
        &json!({"items": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}),
        2,
    );
    assert_eq!(many.len(), 2);
}

#[test]
fn a_schema_is_compiled_once_and_kept() {
    let compiled = Compiled::default();
    let key = ("ids".to_string(), 3, Part::Input);
    let first = compiled
        .get(&key, &json!({"type": "integer"}), &Documents::default())
        .unwrap();
    // The same key gives the same compiled schema, whatever is passed again.
    let again = compiled
        .get(&key, &json!({"type": "string"}), &Documents::default())
        .unwrap();
    assert!(std::sync::Arc::ptr_eq(&first, &again));
    assert_eq!(compiled.len(), 1);
    // Bounded: past the cap the least recently used half goes.
    for version in 0..1100 {
        let key = ("many".to_string(), version, Part::Output);
        compiled
            .get(&key, &json!({"type": "integer"}), &Documents::default())
            .unwrap();
    }
    assert!(compiled.len() <= 1024, "{}", compiled.len());
}
