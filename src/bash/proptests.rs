//! Property tests of the bash request model against hostile JSON: any body is either a request
//! or a 422 at `body`, never a panic or a 500.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::model::ExecuteBashRequest;
use crate::error::ApiError;

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(vec!["command", "cwd", "timeout", "12", "1e3", "-1", ".."])
            .prop_map(Value::from),
        ".{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec!["command", "cwd", "timeout", "x"]),
                    inner
                ),
                0..4
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_body_is_a_request_or_a_422(body in arb_json()) {
        match ExecuteBashRequest::from_json(&body) {
            Ok(r) => {
                prop_assert!(body["command"].is_string());
                prop_assert_eq!(r.cwd.as_deref(), body["cwd"].as_str());
            }
            Err(ApiError::Validation(items)) => {
                for item in items {
                    prop_assert_eq!(&item.loc[0], &json!("body"));
                }
            }
            Err(other) => prop_assert!(false, "{body}: {other:?}"),
        }
    }
}
