//! Audit endpoints: signed checkpoints of the Merkle tree over the log, inclusion and consistency proofs
//! (RFC 9162), seals, the trust keys, and dispatch bulletins.
//!
//! Checkpoints, keys and bulletins are published (every role); proofs and seals are audit material
//! (inspectors); bulletins are issued by bureaus for their region.

use crate::audit::bulletin;
use crate::auth::Auth;
use crate::error::{ApiError, Problem as ProblemJson};
use crate::json::{Params, PathParam};
use crate::routes::queries::region_param;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use rectify_domain::audit::{AuditRecord, Bulletin, Checkpoint, Seal, Trust};
use rectify_domain::hex_text;
use rectify_domain::permissions::{Action, Target, authorize};
use rectify_domain::{Actor, RegionCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

fn allow(state: &AppState, actor: &Actor, action: Action, region: Option<RegionCode>) -> Result<(), ApiError> {
    let region = region.unwrap_or(state.regions.root);
    authorize(actor, action, Target { region, grid: None, responsible: None })?;
    Ok(())
}

/// Waits (bounded) until the Merkle index holds `size` commits.
async fn indexed(state: &AppState, size: u64) -> Result<(), ApiError> {
    if state.audit.wait_for(size, state.wait_limit).await {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "the log has no position {size} yet (the audit index is at {})",
            state.audit.size()
        )))
    }
}

fn hexes(hashes: &[[u8; 32]]) -> Vec<String> {
    hashes.iter().map(hex_text::encode).collect()
}

/// Tree size for a checkpoint.
#[derive(Deserialize, IntoParams)]
pub struct CheckpointQuery {
    /// Commits the checkpoint covers (default: every commit indexed so far).
    pub size: Option<u64>,
}

/// A checkpoint of the Merkle tree over the log, signed now by this service's key.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit", params(CheckpointQuery),
    responses((status = 200, body = Checkpoint), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn checkpoint(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<CheckpointQuery>,
) -> Result<Json<Checkpoint>, ApiError> {
    allow(&state, &actor, Action::ReadCheckpoints, None)?;
    let size = q.size.unwrap_or_else(|| state.audit.size());
    indexed(&state, size).await?;
    state.audit.checkpoint(size).await?.map(Json).ok_or_else(|| ApiError::NotFound(format!("no tree of size {size}")))
}

/// The public keys whose signatures count, with their validity periods.
#[utoipa::path(get, path = "/api/v1/audit/keys", tag = "audit",
    responses((status = 200, body = Object), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn keys(State(state): State<AppState>, Auth(actor): Auth) -> Result<Json<Trust>, ApiError> {
    allow(&state, &actor, Action::ReadCheckpoints, None)?;
    Ok(Json(state.audit.trust().map_err(ApiError::Internal)?))
}

/// Which leaf, in which tree.
#[derive(Deserialize, IntoParams)]
pub struct InclusionQuery {
    /// The log position (1-based) of the commit.
    pub position: u64,
    /// The tree size the proof is for (default: every commit indexed so far).
    pub size: Option<u64>,
}

/// One event's id and hash (the leaf data is the position and these hashes).
#[derive(Serialize, ToSchema)]
pub struct EventHash {
    pub event_id: String,
    pub hash: String,
}

/// An RFC 9162 inclusion proof with the signed checkpoint it leads to.
#[derive(Serialize, ToSchema)]
pub struct InclusionProof {
    pub position: u64,
    /// `position - 1`.
    pub leaf_index: u64,
    pub size: u64,
    /// `SHA-256(0x00 || position as 8 bytes big-endian || each event hash as 32 bytes)`, hex.
    pub leaf_hash: String,
    /// The commit's events, in order.
    pub events: Vec<EventHash>,
    /// Sibling hashes from the leaf up (RFC 9162 `PATH`), hex.
    pub proof: Vec<String>,
    pub checkpoint: Checkpoint,
}

/// Proves that the commit at `position` is in the tree of `size` commits.
#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn inclusion(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    allow(&state, &actor, Action::ReadAudit, None)?;
    if q.position == 0 {
        return Err(ApiError::invalid("position", "`position` starts at 1"));
    }
    let size = q.size.unwrap_or_else(|| state.audit.size()).max(q.position);
    indexed(&state, size).await?;
    let record = state
        .log
        .read_from(q.position, 1)
        .await?
        .into_iter()
        .find(|r| r.position == q.position)
        .ok_or_else(|| ApiError::NotFound(format!("no commit at position {}", q.position)))?;
    let proof =
        state.audit.inclusion(q.position, size).await?.ok_or_else(|| ApiError::NotFound("no such proof".into()))?;
    let checkpoint = state.audit.checkpoint(size).await?.ok_or_else(|| ApiError::NotFound("no such tree".into()))?;
    let leaf = state.audit.leaf(q.position).await?.ok_or_else(|| ApiError::NotFound("no such leaf".into()))?;
    Ok(Json(InclusionProof {
        position: q.position,
        leaf_index: q.position - 1,
        size,
        leaf_hash: hex_text::encode(leaf),
        events: record
            .commit
            .events
            .iter()
            .map(|e| EventHash { event_id: e.event_id.clone(), hash: e.hash.clone() })
            .collect(),
        proof: hexes(&proof),
        checkpoint,
    }))
}

/// Two tree sizes.
#[derive(Deserialize, IntoParams)]
pub struct ConsistencyQuery {
    pub from: u64,
    /// Default: every commit indexed so far.
    pub to: Option<u64>,
}

/// An RFC 9162 consistency proof between two signed checkpoints.
#[derive(Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// RFC 9162 `PROOF(from, D[to])`, hex.
    pub proof: Vec<String>,
    pub first: Checkpoint,
    pub second: Checkpoint,
}

/// Proves that the tree of `from` commits is a prefix of the tree of `to` commits (the log only grew).
#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn consistency(
    State(state): State<AppState>,
    Auth(actor): Auth,
    Params(q): Params<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    allow(&state, &actor, Action::ReadAudit, None)?;
    let to = q.to.unwrap_or_else(|| state.audit.size());
    if q.from > to {
        return Err(ApiError::invalid("from", "`from` must not exceed `to`"));
    }
    indexed(&state, to).await?;
    let proof = state.audit.consistency(q.from, to).await?.ok_or_else(|| ApiError::NotFound("no such proof".into()))?;
    let first = state.audit.checkpoint(q.from).await?.ok_or_else(|| ApiError::NotFound("no such tree".into()))?;
    let second = state.audit.checkpoint(to).await?.ok_or_else(|| ApiError::NotFound("no such tree".into()))?;
    Ok(Json(ConsistencyProof { from: q.from, to, proof: hexes(&proof), first, second }))
}

/// A seal by its position in the audit store.
#[utoipa::path(get, path = "/api/v1/audit/seals/{position}", tag = "audit", params(("position" = u64, Path)),
    responses((status = 200, body = Object), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn seal(
    State(state): State<AppState>,
    Auth(actor): Auth,
    PathParam(position): PathParam,
) -> Result<Json<Seal>, ApiError> {
    allow(&state, &actor, Action::ReadAudit, None)?;
    let position: u64 = position.parse().map_err(|_| ApiError::NotFound(format!("no seal at {position}")))?;
    match state.log.read_audit(position, 1).await?.into_iter().find(|e| e.position == position) {
        Some(e) => match e.record {
            Ok(AuditRecord::Seal(seal)) => Ok(Json(seal)),
            _ => Err(ApiError::NotFound(format!("audit record {position} is not a seal"))),
        },
        None => Err(ApiError::NotFound(format!("no audit record {position}"))),
    }
}

/// What to freeze.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulletinRequest {
    /// The region (default: the issuer's own).
    pub region: Option<String>,
    #[serde(default)]
    pub title: String,
}

/// Freezes a region's statistics at the current log position with a signed checkpoint (定期调度).
#[utoipa::path(post, path = "/api/v1/bulletins", tag = "audit", request_body = BulletinRequest,
    responses((status = 201, body = Bulletin), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn issue(
    State(state): State<AppState>,
    Auth(actor): Auth,
    crate::json::JsonBody(body): crate::json::JsonBody<BulletinRequest>,
) -> Result<(StatusCode, Json<Bulletin>), ApiError> {
    let region = match body.region.as_deref() {
        Some(raw) => region_param(&state, Some(raw))?,
        None => actor.region,
    };
    allow(&state, &actor, Action::IssueBulletin, Some(region))?;
    if body.title.chars().count() > 200 {
        return Err(ApiError::invalid("title", "`title` holds at most 200 characters"));
    }
    let position = state.audit.size();
    let changes = bulletin::fold(&*state.log, position).await?;
    let stats = bulletin::stats(&changes, &state.regions, region);
    let checkpoint =
        state.audit.checkpoint(position).await?.ok_or_else(|| ApiError::NotFound("no such tree".into()))?;
    let b = Bulletin {
        id: format!("B{}", ulid::Ulid::new()),
        region: region.to_string(),
        title: body.title,
        issued_by: actor,
        issued_at: Utc::now(),
        position,
        stats,
        checkpoint,
        key_id: String::new(),
        signature: String::new(),
    }
    .sign(state.audit.key());
    state.audit.append(&AuditRecord::Bulletin(Box::new(b.clone()))).await?;
    Ok((StatusCode::CREATED, Json(b)))
}

/// A dispatch bulletin by id.
#[utoipa::path(get, path = "/api/v1/bulletins/{id}", tag = "audit", params(("id" = String, Path)),
    responses((status = 200, body = Bulletin), (status = "4XX", body = ProblemJson, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn bulletin(
    State(state): State<AppState>,
    Auth(actor): Auth,
    PathParam(id): PathParam,
) -> Result<Json<Bulletin>, ApiError> {
    allow(&state, &actor, Action::ReadCheckpoints, None)?;
    state.audit.refresh().await?;
    let not_found = || ApiError::NotFound(format!("no bulletin {id}"));
    let at = state.audit.bulletin_at(&id).ok_or_else(not_found)?;
    match state.log.read_audit(at, 1).await?.into_iter().next().map(|e| e.record) {
        Some(Ok(AuditRecord::Bulletin(b))) if b.id == id => Ok(Json(*b)),
        _ => Err(not_found()),
    }
}

/// The seal of one commit, as `/problems/{id}/events` shows it (the whole seal, with every commit it
/// covers, is at `/api/v1/audit/seals/{audit_position}`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SealRef {
    /// The seal's position in the audit store.
    pub audit_position: u64,
    pub key_id: String,
    pub sealed_at: chrono::DateTime<Utc>,
    /// Ed25519 over the seal's canonical bytes, hex.
    pub signature: String,
    /// Commits the seal covers.
    pub covers: usize,
}

/// The seals of `positions` that the audit store holds so far.
pub async fn seal_refs(
    state: &AppState,
    positions: impl Iterator<Item = u64>,
) -> Result<std::collections::HashMap<u64, SealRef>, ApiError> {
    state.audit.refresh().await?;
    let mut by_seal: std::collections::HashMap<u64, Option<SealRef>> = std::collections::HashMap::new();
    let mut out = std::collections::HashMap::new();
    for position in positions {
        let Some(at) = state.audit.seal_of(position) else { continue };
        if let std::collections::hash_map::Entry::Vacant(slot) = by_seal.entry(at) {
            let found = state.log.read_audit(at, 1).await?.into_iter().find(|e| e.position == at);
            let seal = match found.map(|e| e.record) {
                Some(Ok(AuditRecord::Seal(s))) => Some(SealRef {
                    audit_position: at,
                    key_id: s.key_id,
                    sealed_at: s.sealed_at,
                    signature: s.signature,
                    covers: s.entries.len(),
                }),
                _ => None,
            };
            slot.insert(seal);
        }
        if let Some(Some(seal)) = by_seal.get(&at) {
            out.insert(position, seal.clone());
        }
    }
    Ok(out)
}
