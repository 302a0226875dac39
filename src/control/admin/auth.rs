//! Who may use the admin API: reads (status, metrics, the page) are open on loopback and need
//! the admin token elsewhere, as a bearer token or an HTTP Basic password; changes need the
//! bearer token when one is set, and without one must not come from another origin. Tokens are
//! compared in constant time.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use http::header::{self, HeaderValue};
use http::StatusCode;
use subtle::ConstantTimeEq;

use super::{error, AdminResponse, ApiError};

/// Standard base64 (RFC 4648) as Basic credentials may come: `=` padding optional, bits past
/// the last byte ignored.
const BASIC_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Whether `given` is the token, in constant time (`subtle`), so response time does not
/// reveal a prefix of it. (A length mismatch returns at once: the length is not the secret.)
fn token_matches(given: &[u8], token: &str) -> bool {
    bool::from(given.ct_eq(token.as_bytes()))
}

/// The password of an `Authorization: Basic` value (the user name is ignored), decoded.
fn basic_password(value: &str) -> Option<Vec<u8>> {
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = BASIC_BASE64.decode(rest.trim()).ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

/// May this request read the status, the metrics or the page? On loopback, anyone may; off
/// loopback (where [`crate::config::Config::check_admin_exposure`] guarantees a token) the
/// token is needed, as a bearer token (scrapers, `ctl`) or as the password of HTTP Basic
/// authentication, so that a browser can open the status page: it asks for the credentials
/// itself and sends them again with the page's polls. Basic is accepted for reads only: a
/// browser attaches cached Basic credentials to cross-site requests too, so a change needs the
/// bearer header that only a script of the page's own origin can set.
pub(super) fn authorize_read(
    headers: &http::HeaderMap,
    admin: &crate::config::AdminConfig,
) -> Result<(), ApiError> {
    let Some(token) = admin.token.as_deref().filter(|_| !admin.on_loopback()) else {
        return Ok(());
    };
    let values = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let mut given = false;
    for v in values {
        given = true;
        let ok = match bearer(v) {
            Some(b) => token_matches(b.as_bytes(), token),
            None => basic_password(v).is_some_and(|p| token_matches(&p, token)),
        };
        if ok {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        if given {
            "invalid admin token"
        } else {
            "this admin listener is not on loopback: reads need the admin token too (Authorization: Bearer <token>)"
        },
    ))
}

/// The token of an `Authorization: Bearer` value.
fn bearer(v: &str) -> Option<&str> {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// May this request change anything? `token`: the configured admin token.
pub(super) fn authorize(headers: &http::HeaderMap, token: Option<&str>) -> Result<(), ApiError> {
    match token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(bearer);
            match given {
                Some(g) if token_matches(g.as_bytes(), token) => Ok(()),
                Some(_) => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "invalid admin token",
                )),
                None => Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "admin token required: send Authorization: Bearer <token>",
                )),
            }
        }
        None => {
            // No token: refuse browser requests from other origins (and DNS rebinding, where
            // the Host is a name that only resolves to us).
            let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
                return Ok(());
            };
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let host_name = host
                .rsplit_once(':')
                .map_or(host, |(h, _)| h)
                .trim_matches(['[', ']']);
            let local_name = host_name.parse::<std::net::IpAddr>().is_ok()
                || host_name.eq_ignore_ascii_case("localhost");
            if local_name && origin.strip_prefix("http://") == Some(host) {
                Ok(())
            } else {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross-origin change refused (set admin.token to use the API from other origins)",
                ))
            }
        }
    }
}

pub(super) fn unauthorized(e: ApiError) -> AdminResponse {
    let status = e.status;
    let mut r = error(e);
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"stickyroute\""),
        );
    }
    r
}

/// A refused read: both challenges, so a browser offers its login dialog (Basic) and an API
/// client learns it needs a bearer token.
pub(super) fn read_unauthorized(e: ApiError) -> AdminResponse {
    let mut r = error(e);
    let h = r.headers_mut();
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"stickyroute\""),
    );
    h.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"stickyroute admin\", charset=\"UTF-8\""),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn base64_and_basic_credentials() {
        // The engine's settings: padding optional, anything but the standard alphabet refused.
        let decode_base64 = |text: &str| BASIC_BASE64.decode(text).ok();
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        for bad in ["Z", "Zm9v!", "Zg===", "Zm 9v", "Zm9v\u{e9}"] {
            assert!(decode_base64(bad).is_none(), "{bad}");
        }
        // `admin:s3cret`, `:s3cret`, `u:a:b` (the password may hold colons).
        assert_eq!(basic_password("Basic YWRtaW46czNjcmV0").unwrap(), b"s3cret");
        assert_eq!(basic_password("basic OnMzY3JldA==").unwrap(), b"s3cret");
        assert_eq!(basic_password("Basic dTphOmI=").unwrap(), b"a:b");
        assert!(basic_password("Basic czNjcmV0").is_none(), "no colon");
        assert!(basic_password("Bearer YWRtaW46czNjcmV0").is_none());
        assert!(basic_password("Basic").is_none());
    }

    #[test]
    fn reads_need_the_token_off_loopback_only() {
        let admin = |bind: &str, token: Option<&str>| crate::config::AdminConfig {
            bind: bind.parse().unwrap(),
            token: token.map(str::to_string),
            line: None,
        };
        let none = headers(&[]);
        let bearer = headers(&[("authorization", "Bearer s3cret")]);
        let basic = headers(&[("authorization", "Basic YWRtaW46czNjcmV0")]);
        let wrong = headers(&[("authorization", "Basic YWRtaW46bm9wZQ==")]);
        // On loopback reads are open, token or not.
        for a in [admin("127.0.0.1:1", None), admin("[::1]:1", Some("s3cret"))] {
            authorize_read(&none, &a).unwrap();
        }
        let off = admin("0.0.0.0:1", Some("s3cret"));
        assert_eq!(authorize_read(&none, &off).unwrap_err().status, 401);
        assert!(authorize_read(&none, &off)
            .unwrap_err()
            .message
            .contains("not on loopback"));
        assert_eq!(authorize_read(&wrong, &off).unwrap_err().status, 401);
        authorize_read(&bearer, &off).unwrap();
        authorize_read(&basic, &off).unwrap();
        // Basic never authorizes a change (a browser sends it cross-site on its own).
        assert_eq!(authorize(&basic, Some("s3cret")).unwrap_err().status, 401);
    }

    #[test]
    fn token_rules() {
        let t = Some("s3cret");
        assert_eq!(authorize(&headers(&[]), t).unwrap_err().status, 401);
        assert_eq!(
            authorize(&headers(&[("authorization", "Bearer nope")]), t)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            authorize(&headers(&[("authorization", "Basic s3cret")]), t)
                .unwrap_err()
                .status,
            401
        );
        for wrong in ["Bearer s3creT", "Bearer s3cre", "Bearer s3crets", "Bearer "] {
            assert_eq!(
                authorize(&headers(&[("authorization", wrong)]), t)
                    .unwrap_err()
                    .status,
                401,
                "{wrong}"
            );
        }
        assert!(authorize(&headers(&[("authorization", "Bearer s3cret")]), t).is_ok());
        assert!(authorize(&headers(&[("authorization", "bearer s3cret ")]), t).is_ok());
        // With a token, the Origin does not matter.
        assert!(authorize(
            &headers(&[
                ("authorization", "Bearer s3cret"),
                ("origin", "http://evil.example")
            ]),
            t
        )
        .is_ok());
    }

    #[test]
    fn without_token_only_same_origin_browser_requests_change() {
        assert!(
            authorize(&headers(&[]), None).is_ok(),
            "curl / ctl send no Origin"
        );
        let same = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "http://127.0.0.1:9901"),
        ]);
        assert!(authorize(&same, None).is_ok());
        let evil = headers(&[
            ("host", "127.0.0.1:9901"),
            ("origin", "http://evil.example"),
        ]);
        assert_eq!(authorize(&evil, None).unwrap_err().status, 403);
        let rebinding = headers(&[
            ("host", "evil.example:9901"),
            ("origin", "http://evil.example:9901"),
        ]);
        assert_eq!(authorize(&rebinding, None).unwrap_err().status, 403);
    }
}
