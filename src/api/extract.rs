//! Request extractors whose rejections are problem+json, not axum's plain text, and the
//! rules of a request body (its content type, no key twice).

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

use super::error::ApiError;

/// A JSON request body: `Content-Type: application/json` or none (programs that send
/// no type mean JSON; browsers always send one). Any other type is a 415
/// `unsupported_media_type`, so that a web page cannot post a form or `text/plain` body
/// (which browsers send cross-origin without asking) and have it read as JSON. Malformed
/// bodies are 400 `invalid_json`, bodies with a key twice in one object (at any depth) 400
/// `duplicate_key`, bodies of the wrong shape or with unknown fields 400 `invalid_request`.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_json_content_type(req.headers())?;
        // The body is bounded by axum's default limit (2 MiB) before it is parsed.
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                return ApiError::new(
                    e.status(),
                    "body_too_large",
                    "the request body is larger than 2 MiB; requests are small JSON documents",
                );
            }
            ApiError::bad_request(
                "invalid_request",
                format!("reading request body: {}", e.body_text()),
            )
        })?;
        let value = parse_strict(&bytes)?;
        serde_path_to_error::deserialize(value)
            .map(Json)
            .map_err(data_error)
    }
}

fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(given) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let given = String::from_utf8_lossy(given.as_bytes());
    let essence = given
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" {
        return Ok(());
    }
    let hint = match essence.as_str() {
        "application/x-www-form-urlencoded" => {
            " (curl -d sends that by default: add -H 'Content-Type: application/json')"
        }
        _ => "",
    };
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("the body must be application/json, not {given:?}{hint}"),
    ))
}

/// Parses a JSON document, refusing a key given twice in one object (serde_json would keep
/// the last one silently, so two readers could disagree about the request).
fn parse_strict(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue::deserialize(&mut de).and_then(|v| de.end().map(|()| v.0));
    parsed.map_err(|e| match e.classify() {
        // The only data error a `StrictValue` raises: the document itself is well formed.
        serde_json::error::Category::Data => {
            ApiError::bad_request("duplicate_key", format!("request body: {e}"))
        }
        _ => ApiError::bad_request(
            "invalid_json",
            format!("request body is not valid JSON: {e}"),
        ),
    })
}

/// A `serde_json::Value` whose objects have distinct keys.
struct StrictValue(serde_json::Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        StrictValue::deserialize(d).map(|v| v.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(out.into())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(A::Error::custom(format_args!(
                    "duplicate key {key:?}; give each field once"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(out.into())
    }
}

fn data_error(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let at = if path == "." {
        String::new()
    } else {
        format!("{path}: ")
    };
    ApiError::bad_request(
        "invalid_request",
        format!("request body: {at}{}", e.into_inner()),
    )
}

/// The innermost message of an extractor error (serde's, with line and column).
fn source_text(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// `axum::extract::Query`, answering bad query strings with 400 `invalid_query`.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::bad_request(
        "invalid_query",
        format!("query string: {}", source_text(&e)),
    )
}

/// `axum::extract::Path`, answering undecodable path parameters with 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(ApiError::bad_request("invalid_path", e.body_text())),
        }
    }
}

/// For endpoints that take no query parameters: any given is a 400 `invalid_query`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for bad in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"b": 1, "b": 1}}"#,
            r#"[{"x": [{"k": 1, "k": 2}]}]"#,
        ] {
            let e = parse_strict(bad.as_bytes()).unwrap_err();
            assert_eq!(e.code, "duplicate_key", "{bad}");
            assert!(e.detail.contains("duplicate key"), "{}", e.detail);
        }
        let v = parse_strict(br#"{"a": {"b": 1}, "b": [1, 1.5, null, true, "s"], "c": {"b": -1}}"#)
            .unwrap();
        assert_eq!(v["b"][1], 1.5);
        assert_eq!(v["c"]["b"], -1);
        for bad in [&b"{} {}"[..], b"", b"{\"a\": "] {
            assert_eq!(parse_strict(bad).unwrap_err().code, "invalid_json");
        }
    }

    #[test]
    fn only_json_or_no_content_type_is_read() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            check_json_content_type(&h)
        };
        assert!(check_json_content_type(&HeaderMap::new()).is_ok());
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
        ] {
            let e = with(bad).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code.as_str()),
                (415, "unsupported_media_type"),
                "{bad}"
            );
        }
        assert!(
            with("application/x-www-form-urlencoded")
                .unwrap_err()
                .detail
                .contains("-H 'Content-Type: application/json'")
        );
    }
}
