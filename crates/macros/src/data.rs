//! `#[derive(Data)]`: a user type as a task value.
//!
//! The derive writes three things, all through serde and postcard (the type
//! must also derive `serde::Serialize` and `serde::Deserialize`):
//!
//! - `impl Data`: `size_bytes` is `size_of::<Self>()` plus the heap of each
//!   field (of the variant in hand, for an enum), where a field's heap is its
//!   own `size_bytes` less its inline size — so every field must be `Data`;
//!   `encode` is `postcard_encode(self)`.
//! - `impl Decode`: `postcard_decode`.
//! - the codec registration (`register_codec!`), so a value arriving from
//!   another process is decoded eagerly into the type.
//!
//! A generic type gets `Data` and `Decode` with where-clauses (each field type
//! that mentions a type parameter must be `Data`, `Self` must be serializable,
//! `Send`, `Sync` and `'static`) but no registration: an open generic has no
//! single codec name. Register the instantiations you send with
//! `register_codec!(Pair<i64>, Pair<f64>)`; unregistered ones still work,
//! decoded lazily when a typed consumer asks for them.

use proc_macro2::{Ident, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Fields, Generics, Type, WherePredicate, parse_quote};

use crate::krate::Root;

/// Expands `#[derive(Data)]`.
pub(crate) fn expand(input: TokenStream) -> syn::Result<TokenStream> {
    let input: DeriveInput = syn::parse2(input)?;
    let root = parse_options(&input)?;
    let core = root.core();
    let name = &input.ident;

    // The body of `size_bytes`.
    let size = match &input.data {
        syn::Data::Struct(data) => {
            let (pattern, heap) = destructure(quote!(Self), &data.fields);
            quote! {
                let #pattern = self;
                ::std::mem::size_of::<Self>() + #heap
            }
        }
        // No value of an empty enum exists to measure.
        syn::Data::Enum(data) if data.variants.is_empty() => quote!(match *self {}),
        syn::Data::Enum(data) => {
            let arms = data.variants.iter().map(|variant| {
                let variant_name = &variant.ident;
                let (pattern, heap) = destructure(quote!(Self::#variant_name), &variant.fields);
                quote!(#pattern => #heap,)
            });
            quote!(::std::mem::size_of::<Self>() + match self { #(#arms)* })
        }
        syn::Data::Union(data) => {
            return Err(syn::Error::new(
                data.union_token.span,
                "`Data` cannot be derived for a union: its size and encoding depend on which field \
                 is live, which the derive cannot know; implement `Data` and `Decode` by hand",
            ));
        }
    };

    let generic = !input.generics.params.is_empty();
    let mut data_generics = input.generics.clone();
    let mut decode_generics = input.generics.clone();
    if generic {
        let serde = root.serde();
        let data_where = data_generics.make_where_clause();
        data_where
            .predicates
            .push(parse_quote!(Self: #serde::Serialize + ::std::marker::Send + ::std::marker::Sync + 'static));
        for ty in field_types(&input) {
            if mentions_any(ty, &input.generics) {
                data_where.predicates.push(parse_quote!(#ty: #core::value::Data));
            }
        }
        let decode_where = decode_generics.make_where_clause();
        let bound: WherePredicate = parse_quote!(Self: #serde::de::DeserializeOwned);
        decode_where.predicates.push(bound);
    }
    let (data_impl, type_generics, data_where) = data_generics.split_for_impl();
    let (decode_impl, _, decode_where) = decode_generics.split_for_impl();

    let register = if generic {
        quote!()
    } else {
        quote!(#core::register_codec!(#name);)
    };

    Ok(quote! {
        const _: () = {
            #[automatically_derived]
            impl #data_impl #core::value::Data for #name #type_generics #data_where {
                fn size_bytes(&self) -> usize {
                    // Heap bytes of a field: its full size less its inline
                    // part, which `size_of::<Self>()` already counts.
                    fn __blockwise_heap<T: #core::value::Data>(field: &T) -> usize {
                        #core::value::Data::size_bytes(field).saturating_sub(::std::mem::size_of::<T>())
                    }
                    #size
                }

                fn encode(&self, out: &mut ::std::vec::Vec<u8>) -> #core::Result<()> {
                    #core::value::postcard_encode(self, out)
                }
            }

            #[automatically_derived]
            impl #decode_impl #core::value::Decode for #name #type_generics #decode_where {
                fn decode(bytes: &[u8]) -> #core::Result<Self> {
                    #core::value::postcard_decode(bytes)
                }
            }

            #register
        };
    })
}

/// Reads `#[blockwise(crate = path)]` among the type's attributes.
fn parse_options(input: &DeriveInput) -> syn::Result<Root> {
    let mut root = Root::facade();
    let mut seen_crate = false;
    for attr in &input.attrs {
        if !attr.path().is_ident("blockwise") {
            continue;
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("crate") {
                if seen_crate {
                    return Err(meta.error("`crate` is given twice"));
                }
                seen_crate = true;
                root = Root::parse_value(&meta)?;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown #[blockwise(...)] option; the only option is `crate = path` (a module \
                     re-exporting `blockwise_core` and `serde`, for crates that do not depend on \
                     `blockwise`)",
                ))
            }
        })?;
    }
    Ok(root)
}

/// A pattern binding every field of a struct or variant by reference, as
/// `path { member: __blockwise_fieldN, .. }` (braces work for named, tuple and
/// unit shapes alike, and fresh binding names cannot collide with constants in
/// scope), and the sum of the fields' heap sizes.
fn destructure(path: TokenStream, fields: &Fields) -> (TokenStream, TokenStream) {
    // Bindings carry their field type's span, so a field that is not `Data`
    // is reported where it is declared.
    let bindings: Vec<Ident> = fields
        .iter()
        .enumerate()
        .map(|(i, field)| format_ident!("__blockwise_field{}", i, span = field.ty.span()))
        .collect();
    let members = fields.members();
    let pattern = quote!(#path { #(#members: #bindings),* });
    let heaps = fields.iter().zip(&bindings).map(|(field, binding)| {
        quote_spanned! {field.ty.span()=> __blockwise_heap(#binding)}
    });
    let sum = quote!(0usize #(+ #heaps)*);
    (pattern, sum)
}

/// Every field type of every struct field or variant field.
fn field_types(input: &DeriveInput) -> Vec<&Type> {
    match &input.data {
        syn::Data::Struct(data) => data.fields.iter().map(|field| &field.ty).collect(),
        syn::Data::Enum(data) => data
            .variants
            .iter()
            .flat_map(|variant| variant.fields.iter().map(|field| &field.ty))
            .collect(),
        syn::Data::Union(_) => Vec::new(),
    }
}

/// Whether a type mentions one of the type's generic parameters (a field of a
/// concrete type needs no bound, and bounding it could expose a private type
/// in a public impl).
fn mentions_any(ty: &Type, generics: &Generics) -> bool {
    let names: Vec<String> = generics
        .params
        .iter()
        .map(|param| match param {
            syn::GenericParam::Type(p) => p.ident.to_string(),
            syn::GenericParam::Const(p) => p.ident.to_string(),
            syn::GenericParam::Lifetime(p) => p.lifetime.ident.to_string(),
        })
        .collect();
    fn walk(tokens: TokenStream, names: &[String]) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => names.iter().any(|name| ident == name),
            TokenTree::Group(group) => walk(group.stream(), names),
            _ => false,
        })
    }
    walk(quote!(#ty), &names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_finds_parameters_inside_paths_and_groups() {
        let generics: Generics = parse_quote!(<T, const N: usize>);
        assert!(mentions_any(&parse_quote!(Vec<T>), &generics));
        assert!(mentions_any(&parse_quote!([u8; N]), &generics));
        assert!(mentions_any(&parse_quote!((String, Option<T>)), &generics));
        assert!(!mentions_any(&parse_quote!(Vec<String>), &generics));
    }

    #[test]
    fn union_is_rejected_with_a_reason() {
        let err = expand(quote!(
            union U {
                a: u32,
                b: f32,
            }
        ))
        .unwrap_err();
        assert!(err.to_string().contains("cannot be derived for a union"), "{err}");
    }

    #[test]
    fn unknown_option_is_rejected() {
        let err = expand(quote!(
            #[blockwise(krate = x)]
            struct S;
        ))
        .unwrap_err();
        assert!(err.to_string().contains("the only option is `crate = path`"), "{err}");
    }
}
