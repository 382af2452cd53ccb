//! Property tests of request decoding against hostile bytes: any body, any nesting depth, any
//! query string decodes without a panic, and a refused body is a 422 at `body`.

use proptest::prelude::*;

use super::validate::{QueryPairs, decode_body};
use crate::error::ApiError;

fn assert_body_422(e: &ApiError) -> Result<(), TestCaseError> {
    match e {
        ApiError::Validation(items) => {
            prop_assert_eq!(items.len(), 1);
            prop_assert_eq!(&items[0].loc[0], &serde_json::json!("body"));
            Ok(())
        }
        other => Err(TestCaseError::fail(format!("not a 422: {other:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_are_a_422(bytes in prop::collection::vec(any::<u8>(), 0..512), json in prop::option::of(any::<bool>())) {
        if let Err(e) = decode_body(&bytes, json) {
            assert_body_422(&e)?;
        }
    }

    #[test]
    fn nesting_beyond_the_recursion_limit_is_a_422(depth in 100usize..20_000, open in prop::sample::select(vec!["[", "{\"a\":", "[{\"a\":"])) {
        let body = open.repeat(depth);
        let e = decode_body(body.as_bytes(), Some(true)).expect_err("unterminated");
        assert_body_422(&e)?;
        let closed = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        match decode_body(closed.as_bytes(), Some(true)) {
            Ok(_) => prop_assert!(depth <= 128, "depth {depth} accepted"),
            Err(e) => assert_body_422(&e)?,
        }
    }

    #[test]
    fn any_query_string_parses(q in ".{0,200}") {
        let pairs = QueryPairs::parse(&q);
        let _ = pairs.get("limit");
        let _ = pairs.get_all("ids");
    }
}
