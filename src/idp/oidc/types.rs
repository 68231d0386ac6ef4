//! The crate's generic types, instantiated for this adapter.

use super::*;

/// Every claim that is not one of the crate's typed standard claims.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims(serde_json::Map<String, serde_json::Value>);
impl AdditionalClaims for ExtraClaims {}

impl From<serde_json::Map<String, serde_json::Value>> for ExtraClaims {
    fn from(m: serde_json::Map<String, serde_json::Value>) -> Self {
        Self(m)
    }
}

/// Discovery fields the core metadata type does not carry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraMetadata {
    #[serde(default)]
    pub(super) authorization_response_iss_parameter_supported: Option<bool>,
    #[serde(default)]
    pub(super) end_session_endpoint: Option<Url>,
}
impl AdditionalProviderMetadata for ExtraMetadata {}

pub(super) type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
pub(super) type IdTokenFieldsX = IdTokenFields<
    ExtraClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
pub(super) type TokenResponseX = StandardTokenResponse<IdTokenFieldsX, CoreTokenType>;
pub(super) type Client = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponseX,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;
