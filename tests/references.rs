//! References between a chain's calls: how they parse, what they render to, and
//! how they fail.

use std::collections::BTreeMap;

use jobqueue::chain::reference::{
    Context, Output, Placement, Reference, Segment, Source, parse, pieces, references_in,
    render_json, render_str,
};
use serde_json::{Value, json};

fn context() -> Context {
    let mut steps = BTreeMap::new();
    steps.insert(
        "fetch".to_string(),
        std::sync::Arc::new(Output {
            status: 200,
            headers: BTreeMap::from([("etag".to_string(), "\"v7\"".to_string())]),
            body: json!({
                "items": [{"id": 42, "name": "a b/c", "tags": ["x", "y"], "ok": true, "gone": null}],
                "count": 1,
                "odd key": "yes"
            }),
        }),
    );
    Context {
        input: json!({"customer": {"id": "c-9", "vip": false}, "limit": 5}).into(),
        steps,
        order: vec!["fetch".to_string(), "store".to_string()].into(),
    }
}

#[test]
fn references_parse_into_a_source_and_a_path() {
    let r = parse(" steps.fetch.output.body.items[0].id ").unwrap();
    assert_eq!(r.source, Source::Body("fetch".into()));
    assert_eq!(
        r.path,
        [
            Segment::Name("items".into()),
            Segment::Index(0),
            Segment::Name("id".into())
        ]
    );
    assert_eq!(r.to_string(), "steps.fetch.output.body.items[0].id");
    assert_eq!(r.step(), Some("fetch"));
    assert_eq!(parse("input.customer.id").unwrap().source, Source::Input);
    assert_eq!(
        parse("steps.fetch.output.status").unwrap().source,
        Source::Status("fetch".into())
    );
    assert_eq!(
        parse("steps.fetch.output.headers.ETag").unwrap().source,
        Source::Header("fetch".into(), "etag".into())
    );
    // The older form: the first step's body.
    let seed = parse("tasks[0].output_data.id").unwrap();
    assert_eq!(seed.source, Source::BodyAt(0));
    assert_eq!(seed.path, [Segment::Name("id".into())]);
    // Names that are not plain go in quotes.
    let odd = parse(r#"steps.fetch.output.body["odd key"]"#).unwrap();
    assert_eq!(odd.path, [Segment::Name("odd key".into())]);
    assert_eq!(odd.to_string(), r#"steps.fetch.output.body["odd key"]"#);
}

#[test]
fn malformed_references_are_refused_with_what_is_wrong() {
    for bad in [
        "",
        "input.",
        "output.x",
        "steps.fetch",
        "steps.fetch.output",
        "steps.fetch.output.body.items[x]",
        "steps.fetch.output.body.items[0",
        "steps.fetch.output.status.code",
        "steps.fetch.output.headers",
        "input | upper",
        "input.a..b",
        "tasks[0].output",
    ] {
        let error = parse(bad).unwrap_err();
        assert_eq!(error.reference, bad.trim(), "{bad}");
        assert!(!error.message.is_empty());
    }
    assert!(
        pieces("http://h/{{ input.a }").is_err(),
        "an unclosed brace"
    );
}

#[test]
fn a_whole_value_reference_keeps_its_type() {
    let ctx = context();
    let template = json!({
        "id": "{{ steps.fetch.output.body.items[0].id }}",
        "tags": "{{steps.fetch.output.body.items[0].tags}}",
        "item": "{{ tasks[0].output_data.items[0] }}",
        "vip": "{{ input.customer.vip }}",
        "status": "{{ steps.fetch.output.status }}",
        "nested": [{"limit": "{{ input.limit }}"}],
        "text": "customer {{ input.customer.id }} has {{ steps.fetch.output.body.count }} item(s)",
        "literal": 3
    });
    let rendered = render_json(&template, &ctx).unwrap();
    assert_eq!(
        rendered,
        json!({
            "id": 42,
            "tags": ["x", "y"],
            "item": {"id": 42, "name": "a b/c", "tags": ["x", "y"], "ok": true, "gone": null},
            "vip": false,
            "status": 200,
            "nested": [{"limit": 5}],
            "text": "customer c-9 has 1 item(s)",
            "literal": 3
        })
    );
    // Every reference of a template, in order, for the submit-time checks.
    let refs: Vec<String> = references_in(&template)
        .unwrap()
        .iter()
        .map(Reference::to_string)
        .collect();
    assert_eq!(refs.len(), 8);
    assert_eq!(refs[0], "steps.fetch.output.body.items[0].id");
}

#[test]
fn a_reference_inside_a_url_takes_a_scalar_percent_encoded() {
    let ctx = context();
    let url = render_str(
        "https://api.example.com/items/{{ steps.fetch.output.body.items[0].name }}?id={{input.customer.id}}&ok={{ steps.fetch.output.body.items[0].ok }}",
        &ctx,
        Placement::Url,
    )
    .unwrap();
    assert_eq!(
        url,
        "https://api.example.com/items/a%20b%2Fc?id=c-9&ok=true"
    );
    let header = render_str(
        "If-Match {{ steps.fetch.output.headers.etag }}",
        &ctx,
        Placement::Text,
    )
    .unwrap();
    assert_eq!(header, "If-Match \"v7\"");
    // An object or an array has no place inside a string.
    let error = render_str(
        "/x/{{ steps.fetch.output.body.items }}",
        &ctx,
        Placement::Url,
    )
    .unwrap_err();
    assert!(error.message.contains("an array"), "{error}");
    // Nor has a null: it is never written as an empty string.
    let error = render_str(
        "/x/{{ steps.fetch.output.body.items[0].gone }}",
        &ctx,
        Placement::Url,
    )
    .unwrap_err();
    assert!(error.message.contains("null"), "{error}");
}

#[test]
fn a_reference_that_finds_nothing_fails_with_its_path_never_an_empty_value() {
    let ctx = context();
    let cases: [(&str, &str); 6] = [
        (
            "{{ steps.fetch.output.body.items[3].id }}",
            "[3] not found: .items is an array too short",
        ),
        (
            "{{ steps.fetch.output.body.missing }}",
            ".missing not found: the start is an object without it",
        ),
        (
            "{{ steps.fetch.output.body.count.value }}",
            ".value not found: .count is a number",
        ),
        (
            "{{ steps.store.output.body.id }}",
            "step store has no output",
        ),
        ("{{ tasks[5].output_data.id }}", "there is no step 5"),
        (
            "{{ steps.fetch.output.headers.x-trace }}",
            "no x-trace header",
        ),
    ];
    for (template, message) in cases {
        let error = render_json(&Value::String(template.into()), &ctx).unwrap_err();
        assert!(
            error.message.contains(message),
            "{template}: {error} (wanted {message})"
        );
        let inner = template
            .trim_start_matches("{{")
            .trim_end_matches("}}")
            .trim();
        assert_eq!(error.reference, inner);
    }
}
