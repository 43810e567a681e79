//! Requests signed by real clients (botocore, aws-sigv4) must verify, and the
//! canonical request / string-to-sign we compute must be byte-identical to
//! the signer's.

mod common;

use common::{Fixture, load, load_all};
use fleetfn_sigv4::{
    AuthError, EMPTY_SHA256, SignatureLocation, SigningParams, VerifyConfig, presign_query,
    sign_request, verify,
};

fn cfg(fx: &Fixture) -> VerifyConfig {
    VerifyConfig::new(fx.region.clone(), fx.service.clone())
}

#[test]
fn fixtures_are_present() {
    let all = load_all();
    let botocore = all
        .iter()
        .filter(|f| f.source.starts_with("botocore"))
        .count();
    assert!(
        botocore >= 14,
        "expected the botocore fixtures, found {botocore}"
    );
    let aws_sigv4 = all.iter().filter(|f| f.source == "aws-sigv4").count();
    assert!(
        aws_sigv4 >= 5,
        "expected the aws-sigv4 fixtures, found {aws_sigv4}"
    );
}

#[test]
fn every_fixture_verifies() {
    for fx in load_all() {
        let headers = fx.header_map();
        let principal = verify(
            &fx.parts(&headers),
            &fx.body_sha256(),
            fx.now(),
            &cfg(&fx),
            fx.lookup(),
        )
        .unwrap_or_else(|e| panic!("{}: {e:?}", fx.name));
        assert_eq!(principal.access_key_id, fx.access_key_id, "{}", fx.name);
        assert_eq!(principal.session_token, fx.session_token, "{}", fx.name);
        assert_eq!(principal.signed_at, fx.now(), "{}", fx.name);
        let presigned = fx.query.contains("X-Amz-Signature=");
        let expected = if presigned {
            SignatureLocation::QueryString
        } else {
            SignatureLocation::Header
        };
        assert_eq!(principal.location, expected, "{}", fx.name);
    }
}

/// With a wrong secret the verifier reports the canonical request and string
/// to sign it computed: they must equal what the client signed.
#[test]
fn canonical_request_and_string_to_sign_match_the_signer() {
    for fx in load_all() {
        let headers = fx.header_map();
        let err = verify(
            &fx.parts(&headers),
            &fx.body_sha256(),
            fx.now(),
            &cfg(&fx),
            |_| Some("not-the-secret"),
        )
        .expect_err(&fx.name);
        let AuthError::SignatureDoesNotMatch {
            canonical_request,
            string_to_sign,
        } = err
        else {
            panic!("{}: unexpected error {err:?}", fx.name);
        };
        if fx.query.contains("X-Amz-Signature=")
            && fx.canonical_request.ends_with("\nUNSIGNED-PAYLOAD")
        {
            // A presigned URL signed with UNSIGNED-PAYLOAD: the verifier
            // reports its first attempt, which uses the body hash.
            let (ours, _) = canonical_request.rsplit_once('\n').unwrap();
            let (theirs, _) = fx.canonical_request.rsplit_once('\n').unwrap();
            assert_eq!(ours, theirs, "{}", fx.name);
            continue;
        }
        assert_eq!(canonical_request, fx.canonical_request, "{}", fx.name);
        assert_eq!(string_to_sign, fx.string_to_sign, "{}", fx.name);
    }
}

/// What aws-sigv4 (aws-sdk-lambda's signer) does, pinned down explicitly.
#[test]
fn aws_sigv4_double_encodes_the_path_too() {
    let arn = load("aws_sigv4_get_function_arn");
    assert!(arn.canonical_request.contains(
        "\n/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A123456789012%253Afunction%253Amy-fn\n"
    ));
    let q = load("aws_sigv4_invoke_qualifier");
    assert_eq!(q.query, "Qualifier=%24LATEST.PUBLISHED");
    assert!(
        q.canonical_request
            .contains("\nQualifier=%24LATEST.PUBLISHED\n")
    );
}

/// What botocore does with paths and queries, pinned down explicitly.
#[test]
fn botocore_double_encodes_the_path_but_not_the_query() {
    let arn = load("get_function_arn_in_path");
    assert_eq!(
        arn.path,
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Amy-fn"
    );
    assert!(arn.canonical_request.contains(
        "\n/2015-03-31/functions/arn%253Aaws%253Alambda%253Aus-east-1%253A123456789012%253Afunction%253Amy-fn\n"
    ));

    let alias = load("invoke_partial_arn_alias");
    assert_eq!(alias.path, "/2015-03-31/functions/my-fn%3Aprod/invocations");
    assert!(
        alias
            .canonical_request
            .contains("\n/2015-03-31/functions/my-fn%253Aprod/invocations\n")
    );

    let q = load("invoke_qualifier_latest_published");
    assert_eq!(q.query, "Qualifier=%24LATEST.PUBLISHED");
    assert!(
        q.canonical_request
            .contains("\nQualifier=%24LATEST.PUBLISHED\n")
    );

    let list = load("list_functions_query");
    assert_eq!(list.path, "/2015-03-31/functions");
    assert_eq!(list.query, "MaxItems=2&Marker=abc");
    assert!(list.canonical_request.contains("\nMarker=abc&MaxItems=2\n"));

    let reserved = load("list_functions_reserved_chars_in_query");
    assert_eq!(reserved.query, "Marker=a%20b%2Bc%2Fd%3De%26f~g%24h%3Ai");
    assert!(
        reserved
            .canonical_request
            .contains("\nMarker=a%20b%2Bc%2Fd%3De%26f~g%24h%3Ai\n")
    );
}

/// Our signer produces the same Authorization header as botocore for the
/// fixtures whose signed header set is the one our signer picks.
#[test]
fn signer_reproduces_botocore_authorization_headers() {
    let mut checked = 0;
    for fx in load_all() {
        if !fx.source.starts_with("botocore") {
            continue;
        }
        let headers = fx.header_map();
        let Some(original) = headers.get("authorization") else {
            continue;
        };
        let original = original.to_str().unwrap().to_owned();
        if original.contains("SignedHeaders=date;") {
            continue; // we always sign with X-Amz-Date
        }
        let mut resign = headers.clone();
        resign.remove("authorization");
        resign.remove("x-amz-date");
        sign_request(
            &fx.method,
            &fx.path,
            &fx.query,
            &mut resign,
            &fx.body_sha256(),
            &SigningParams {
                access_key_id: &fx.access_key_id,
                secret_access_key: &fx.secret_access_key,
                session_token: fx.session_token.as_deref(),
                region: &fx.region,
                service: &fx.service,
                time: fx.now(),
            },
        )
        .unwrap();
        assert_eq!(
            resign.get("authorization").unwrap().to_str().unwrap(),
            original,
            "{}",
            fx.name
        );
        checked += 1;
    }
    assert!(checked >= 11, "only {checked} fixtures compared");
}

#[test]
fn presigner_reproduces_botocore_presigned_url() {
    let fx = load("presigned_get_function");
    let (original_query, _) = fx.query.split_once("&X-Amz-Algorithm=").unwrap();
    let host = fx.header_map()["host"].to_str().unwrap().to_owned();
    let query = presign_query(
        "GET",
        &fx.path,
        original_query,
        &host,
        EMPTY_SHA256,
        300,
        &SigningParams {
            access_key_id: &fx.access_key_id,
            secret_access_key: &fx.secret_access_key,
            session_token: None,
            region: &fx.region,
            service: &fx.service,
            time: fx.now(),
        },
    )
    .unwrap();
    assert_eq!(query, fx.query);
}
