//! `/v1/tokens`: the admin API over the stored tokens (scope `admin`; see `crate::auth`).

use chrono::{DateTime, SecondsFormat};
use metrics_types::ErrorCode;
use poem::http::StatusCode;
use poem_openapi::{param::Path, payload::Json, ApiResponse, Object, OpenApi};

use super::{error::ApiError, schema::Text, ApiTags};
use crate::{
    auth::Scope,
    store::{TokenInfo, TokenStore},
    AppState,
};

/// Managing tokens.
pub(crate) struct TokensApi {
    pub(crate) state: AppState,
}

/// A token to create.
#[derive(Debug, Object)]
struct CreateToken {
    /// A label for people (`ci`, `grafana`, ...).
    #[oai(default, nullable)]
    name: Text,
    /// What it may do: `read`, `write`, `delete`, `admin` (implies the rest). At least one.
    #[oai(validator(min_items = 1))]
    scopes: Vec<Scope>,
    /// Confine it to metric names starting with one of these; empty, null or absent: every
    /// name. An `admin` token cannot be confined (it could create any token).
    #[oai(default, nullable)]
    prefixes: Vec<Text>,
}

/// A stored token, without its secret.
#[derive(Debug, Object)]
struct TokenView {
    /// Its id, for `DELETE /v1/tokens/{id}`.
    id: i64,
    /// Its label.
    name: String,
    /// Its first characters, to tell tokens apart.
    hint: String,
    /// What it may do.
    scopes: Vec<Scope>,
    /// The name prefixes it is confined to; empty means every name.
    prefixes: Vec<String>,
    /// When it was created (RFC 3339, UTC).
    created: String,
    /// When it was revoked, if it was (`null` if not).
    #[oai(nullable)]
    revoked: Option<String>,
}

/// A token just created: the only answer that ever holds the token itself.
#[derive(Debug, Object)]
struct CreatedToken {
    /// The token: send it as `Authorization: Bearer <token>`. It is not stored and cannot be
    /// shown again.
    token: String,
    /// What was stored.
    info: TokenView,
}

/// Every token.
#[derive(Debug, Object)]
struct TokenList {
    /// Oldest first, revoked ones included.
    tokens: Vec<TokenView>,
}

#[derive(ApiResponse)]
enum CreateResponse {
    /// The token is created; this is the only time it is shown.
    #[oai(status = 201)]
    Created(Json<CreatedToken>),
}

#[derive(ApiResponse)]
enum RevokeResponse {
    /// The token is revoked: it stops working at once.
    #[oai(status = 204)]
    Revoked,
}

#[OpenApi(tag = "ApiTags::Tokens")]
impl TokensApi {
    /// Create a token
    ///
    /// Creates a token with the given scopes, optionally confined to metric-name prefixes, and
    /// answers it once: the server keeps only its SHA-256 hash. Needs scope `admin`.
    #[oai(path = "/v1/tokens", method = "post", operation_id = "createToken")]
    async fn create(&self, body: Json<CreateToken>) -> Result<CreateResponse, ApiError> {
        let CreateToken {
            name,
            scopes,
            prefixes,
        } = body.0;
        let new =
            crate::auth::cli::validate(name.0, scopes, prefixes.into_iter().map(|p| p.0).collect())
                .map_err(|message| ApiError::bad_request(ErrorCode::InvalidField, message))?;
        let (token, info) = self.tokens()?.create(new).await?;
        Ok(CreateResponse::Created(Json(CreatedToken {
            token,
            info: view(info),
        })))
    }

    /// List tokens
    ///
    /// Every token with its id, label, scopes, prefixes and first characters; never the token.
    /// Needs scope `admin`.
    #[oai(path = "/v1/tokens", method = "get", operation_id = "listTokens")]
    async fn list(&self) -> Result<Json<TokenList>, ApiError> {
        let tokens = self.tokens()?.list().await?;
        Ok(Json(TokenList {
            tokens: tokens.into_iter().map(view).collect(),
        }))
    }

    /// Revoke a token
    ///
    /// The token stops working at once. 404 when there is no such token or it was already
    /// revoked. Needs scope `admin`.
    #[oai(
        path = "/v1/tokens/:id",
        method = "delete",
        operation_id = "revokeToken"
    )]
    async fn revoke(
        &self,
        /// The token's id.
        id: Path<i64>,
    ) -> Result<RevokeResponse, ApiError> {
        if self.tokens()?.revoke(id.0).await? {
            Ok(RevokeResponse::Revoked)
        } else {
            Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no token {} to revoke (unknown or already revoked)", id.0),
            ))
        }
    }
}

impl TokensApi {
    fn tokens(&self) -> Result<&TokenStore, ApiError> {
        self.state.tokens.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "this server keeps no tokens (it runs without a database)",
            )
        })
    }
}

fn view(info: TokenInfo) -> TokenView {
    let time = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    };
    TokenView {
        id: info.id,
        name: info.name,
        hint: info.hint,
        scopes: info.scopes,
        prefixes: info.prefixes,
        created: time(info.created_micros),
        revoked: info.revoked_micros.map(time),
    }
}
