//! The path through which generated code reaches `blockwise-core`.
//!
//! Generated code never names `blockwise_core` directly: a user depends on the
//! facade `blockwise` only, so the default root is `::blockwise::__private`,
//! a hidden module of the facade that re-exports `blockwise_core` (and `serde`,
//! which the bounds of a generic `#[derive(Data)]` need). A crate that does not
//! depend on the facade — core's and the executors' own tests, this crate's
//! tests — passes `crate = some::path` to name a module of its own that
//! re-exports the same items.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::{LitStr, Path};

/// The root module of the generated paths: `::blockwise::__private` unless
/// overridden with `crate = path`.
pub(crate) struct Root(Option<Path>);

impl Root {
    /// The default root, through the facade.
    pub(crate) fn facade() -> Self {
        Root(None)
    }

    /// Reads the value of a `crate = path` (or `crate = "path"`) option.
    pub(crate) fn parse_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Self> {
        let input = meta.value()?;
        let path = if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            lit.parse_with(Path::parse_mod_style)?
        } else {
            input.call(Path::parse_mod_style)?
        };
        Ok(Root(Some(path)))
    }

    /// `<root>::blockwise_core`.
    pub(crate) fn core(&self) -> TokenStream {
        quote!(#self::blockwise_core)
    }

    /// `<root>::serde`.
    pub(crate) fn serde(&self) -> TokenStream {
        quote!(#self::serde)
    }
}

impl ToTokens for Root {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match &self.0 {
            Some(path) => path.to_tokens(tokens),
            None => tokens.extend(quote!(::blockwise::__private)),
        }
    }
}
