//! `#[task]`: keep the function, and register it by name.
//!
//! A worker runs the same executable as the client, so registering a function
//! at link time (`inventory` submissions) makes it findable by name in every
//! process of one build. Three entries are submitted, under one name:
//!
//! - a `TaskEntry`, for running the function as a task:
//!   - `name`: `module_path!() :: fn name`, the stable name sent over the wire;
//!   - `type_name`: `type_name_of_val(&f)`, the string
//!     `registered_name_of::<F>()` computes from the function item's type, so
//!     `delayed(f)` and `map(f)` recognise a registered function unaided;
//!   - `decode`: rebuilds `FnOp` around the function from its argument layout;
//! - a `FnEntry`, for collection ops that call the function in their own way
//!   (a block function over array views): the function as a `fn` pointer
//!   behind `Any`, found with `registered_fn::<fn(..) -> ..>(name)`;
//! - a `RecordFnEntry`, for collections that apply the function to every
//!   record (a bag's `map`, `topk`): typed adapters instantiated here, where
//!   both the parameter and the result types are known (see
//!   `record_adapters`).
//!
//! A function whose parameters are not task values (array views, slices)
//! still registers: its `decode` is chosen by autoref specialization and
//! returns a clear error instead of failing to compile, since such a function
//! is meant for the `FnEntry` only. A function that is a task but is used
//! wrongly (`delayed(f)` with a non-value parameter) fails to compile at that
//! call, where the bound is stated.
//!
//! The function must have one type and one `fn` pointer type that name it: no
//! generics (each instantiation is a different type, and a worker could not
//! know which one to build), no `impl Trait` (generics in disguise), no named
//! lifetimes, no `self`, no `async`, no `unsafe`, and at most `MAX_ARITY`
//! parameters (what `TaskFn` is implemented for).

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{FnArg, ItemFn, LitStr, Signature, Type};

use crate::krate::Root;

/// The most parameters a task function may take: `TaskFn` is implemented for
/// functions of zero to eight parameters.
const MAX_ARITY: usize = 8;

const GENERIC: &str = "a registered task function cannot be generic: each process must find it by one \
                       name; write a non-generic wrapper that calls it with concrete types";

/// Expands `#[task(...)] fn ...`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let root = parse_options(attr)?;
    let func: ItemFn = syn::parse2(item)?;
    check_signature(&func.sig)?;

    let core = root.core();
    let ident = &func.sig.ident;
    let fn_name = LitStr::new(&ident.unraw().to_string(), ident.span());
    let arg_types: Vec<&Type> = func
        .sig
        .inputs
        .iter()
        .filter_map(|arg| match arg {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let abi = &func.sig.abi;
    let output = &func.sig.output;
    let record_adapters = record_adapters(&core, ident, &arg_types, output);

    Ok(quote! {
        #func

        const _: () = {
            const __BLOCKWISE_NAME: &str = ::std::concat!(::std::module_path!(), "::", #fn_name);

            // Autoref specialization: `(&probe).rebuild(..)` resolves to
            // `__BlockwiseTask` when the function is a `TaskFn` of its
            // parameter types, and to `__BlockwiseNotTask` (one autoref
            // further) otherwise — so a function that only collection ops call
            // (say, on array views) registers too, and asking to run it as a
            // task is an error at run time instead of at its definition.
            struct __BlockwiseProbe<F, Args>(F, ::std::marker::PhantomData<fn(Args)>);
            trait __BlockwiseTask {
                fn rebuild(&self, params: &[u8]) -> #core::Result<::std::sync::Arc<dyn #core::op::Op>>;
            }
            impl<F: #core::op::TaskFn<Args> + ::std::marker::Copy, Args: 'static> __BlockwiseTask
                for __BlockwiseProbe<F, Args>
            {
                fn rebuild(&self, params: &[u8]) -> #core::Result<::std::sync::Arc<dyn #core::op::Op>> {
                    #core::op::FnOp::from_params(self.0, __BLOCKWISE_NAME, params)
                }
            }
            trait __BlockwiseNotTask {
                fn rebuild(&self, params: &[u8]) -> #core::Result<::std::sync::Arc<dyn #core::op::Op>>;
            }
            impl<F, Args> __BlockwiseNotTask for &__BlockwiseProbe<F, Args> {
                fn rebuild(&self, _: &[u8]) -> #core::Result<::std::sync::Arc<dyn #core::op::Op>> {
                    ::std::result::Result::Err(#core::Error::new(
                        #core::ErrorKind::TypeMismatch,
                        ::std::format!(
                            "`{}` is registered, but cannot run as a task: its parameters must be \
                             task values (`Data + Decode + Clone`, e.g. numbers, `String`, `Vec<T>`, \
                             types deriving `blockwise::Data`) and its result a task value or a \
                             `Result` of one; collection ops may still call it by name",
                            __BLOCKWISE_NAME,
                        ),
                    ))
                }
            }

            #core::__private::inventory::submit! {
                #core::op::TaskEntry {
                    name: __BLOCKWISE_NAME,
                    type_name: || ::std::any::type_name_of_val(&#ident),
                    decode: |params| {
                        (&__BlockwiseProbe::<_, (#(#arg_types,)*)>(#ident, ::std::marker::PhantomData))
                            .rebuild(params)
                    },
                }
            }

            #record_adapters

            #core::__private::inventory::submit! {
                #core::op::FnEntry {
                    name: __BLOCKWISE_NAME,
                    type_name: || ::std::any::type_name_of_val(&#ident),
                    func: || {
                        static __BLOCKWISE_FN: #abi fn(#(#arg_types),*) #output = #ident;
                        &__BLOCKWISE_FN
                    },
                }
            }
        };
    })
}

/// The `RecordFnEntry` of a function of one parameter: the adapters that let
/// a collection rebuild "apply this function to every record" in another
/// process (see `blockwise_core::records`).
///
/// - `fn(A) -> R`: a map adapter, lifting the function onto streams of `A`,
///   and a flat-map adapter yielding the items of each result, chosen by
///   autoref specialization (an error at run time when `R` is not
///   iterable);
/// - `fn(&A) -> K`: an order adapter (records of `A` by ascending key),
///   chosen by autoref specialization so that a key that is not `Ord` gives
///   `None` at run time instead of a compile error here.
///
/// Other functions (several parameters, `&mut`, trait objects or function
/// pointers, borrowed types elsewhere than the one reference) get an entry
/// without adapters, so that asking for one names the function's shape.
fn record_adapters(core: &TokenStream, ident: &syn::Ident, args: &[&Type], output: &syn::ReturnType) -> TokenStream {
    let key_type = match output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    };
    // Borrowed types (a key borrowing from its record, a view) have lifetimes
    // that a type argument cannot spell as the signature does; they get no
    // adapters, rather than risking a compile error on a function that
    // compiled before.
    let plain = |ty: &dyn ToTokens| {
        let text = ty.to_token_stream().to_string();
        !text.contains('\'') && !text.contains('&')
    };
    let output_plain = plain(&key_type);
    let none = quote!(::std::option::Option::None);
    let (map, flat_map, order) = match args {
        [Type::Reference(reference)]
            if reference.mutability.is_none()
                && !has_trait_object(&reference.elem)
                && plain(&reference.elem)
                && output_plain =>
        {
            let elem = &reference.elem;
            let order = quote! {
                ::std::option::Option::Some(|| {
                    struct __BlockwiseKey<F, A: ?::std::marker::Sized, K>(F, ::std::marker::PhantomData<fn(&A) -> K>);
                    trait __BlockwiseOrdKey {
                        fn order(&self) -> ::std::option::Option<#core::records::ErasedOrder>;
                    }
                    impl<F, A, K> __BlockwiseOrdKey for __BlockwiseKey<F, A, K>
                    where
                        F: ::std::ops::Fn(&A) -> K + ::std::marker::Copy + ::std::marker::Send
                            + ::std::marker::Sync + 'static,
                        A: ?::std::marker::Sized + 'static,
                        K: ::std::cmp::Ord,
                    {
                        fn order(&self) -> ::std::option::Option<#core::records::ErasedOrder> {
                            ::std::option::Option::Some(#core::records::order_by_key::<A, K, F>(self.0))
                        }
                    }
                    trait __BlockwiseNotOrdKey {
                        fn order(&self) -> ::std::option::Option<#core::records::ErasedOrder>;
                    }
                    impl<F, A: ?::std::marker::Sized, K> __BlockwiseNotOrdKey for &__BlockwiseKey<F, A, K> {
                        fn order(&self) -> ::std::option::Option<#core::records::ErasedOrder> {
                            ::std::option::Option::None
                        }
                    }
                    (&__BlockwiseKey::<_, #elem, #key_type>(#ident, ::std::marker::PhantomData)).order()
                })
            };
            (none.clone(), none.clone(), order)
        }
        [arg] if !matches!(arg, Type::Reference(_)) && !has_trait_object(arg) && plain(arg) && output_plain => {
            let map = quote! {
                ::std::option::Option::Some(|prev| {
                    #core::records::map_stream::<#arg, _, _>(#ident, prev)
                })
            };
            let flat_map = quote! {
                ::std::option::Option::Some(|prev| {
                    struct __BlockwiseFlat<F, A, I>(F, ::std::marker::PhantomData<fn(A) -> I>);
                    trait __BlockwiseIterable {
                        fn flat_map(
                            &self,
                            prev: #core::records::ErasedStream,
                        ) -> #core::Result<#core::records::ErasedStream>;
                    }
                    impl<F, A, I> __BlockwiseIterable for __BlockwiseFlat<F, A, I>
                    where
                        F: ::std::ops::Fn(A) -> I + ::std::marker::Copy + ::std::marker::Send
                            + ::std::marker::Sync + 'static,
                        A: 'static,
                        I: ::std::iter::IntoIterator,
                        <I as ::std::iter::IntoIterator>::Item: 'static,
                    {
                        fn flat_map(
                            &self,
                            prev: #core::records::ErasedStream,
                        ) -> #core::Result<#core::records::ErasedStream> {
                            #core::records::flat_map_stream::<A, I, F>(self.0, prev)
                        }
                    }
                    trait __BlockwiseNotIterable {
                        fn flat_map(
                            &self,
                            prev: #core::records::ErasedStream,
                        ) -> #core::Result<#core::records::ErasedStream>;
                    }
                    impl<F, A, I> __BlockwiseNotIterable for &__BlockwiseFlat<F, A, I> {
                        fn flat_map(
                            &self,
                            _: #core::records::ErasedStream,
                        ) -> #core::Result<#core::records::ErasedStream> {
                            ::std::result::Result::Err(#core::Error::new(
                                #core::ErrorKind::TypeMismatch,
                                ::std::format!(
                                    "the registered function `{}` cannot flat-map records: its result is not \
                                     iterable",
                                    __BLOCKWISE_NAME,
                                ),
                            ))
                        }
                    }
                    (&__BlockwiseFlat::<_, #arg, #key_type>(#ident, ::std::marker::PhantomData)).flat_map(prev)
                })
            };
            (map, flat_map, none.clone())
        }
        _ => (none.clone(), none.clone(), none),
    };
    quote! {
        #core::__private::inventory::submit! {
            #core::records::RecordFnEntry {
                name: __BLOCKWISE_NAME,
                map: #map,
                flat_map: #flat_map,
                order: #order,
            }
        }
    }
}

/// Whether a type mentions a trait object (`dyn Trait`), whose default
/// lifetime differs between a signature and a type argument.
fn has_trait_object(ty: &Type) -> bool {
    match ty {
        Type::TraitObject(_) => true,
        Type::Array(array) => has_trait_object(&array.elem),
        Type::Group(group) => has_trait_object(&group.elem),
        Type::Paren(paren) => has_trait_object(&paren.elem),
        Type::Ptr(ptr) => has_trait_object(&ptr.elem),
        Type::Reference(reference) => has_trait_object(&reference.elem),
        Type::Slice(slice) => has_trait_object(&slice.elem),
        Type::Tuple(tuple) => tuple.elems.iter().any(has_trait_object),
        Type::BareFn(_) => true,
        Type::Path(path) => path.path.segments.iter().any(|segment| match &segment.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().any(|arg| match arg {
                syn::GenericArgument::Type(ty) => has_trait_object(ty),
                _ => false,
            }),
            syn::PathArguments::Parenthesized(_) => true,
            syn::PathArguments::None => false,
        }),
        _ => false,
    }
}

/// Reads `#[task]` or `#[task(crate = path)]`.
fn parse_options(attr: TokenStream) -> syn::Result<Root> {
    let mut root = Root::facade();
    let mut seen_crate = false;
    if attr.is_empty() {
        return Ok(root);
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            if seen_crate {
                return Err(meta.error("`crate` is given twice"));
            }
            seen_crate = true;
            root = Root::parse_value(&meta)?;
            Ok(())
        } else {
            Err(meta.error(
                "unknown #[task] option; the only option is `crate = path` (a module re-exporting \
                 `blockwise_core`, for crates that do not depend on `blockwise`)",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(root)
}

/// Rejects signatures that cannot be registered under one name, with the span
/// of the offending part.
fn check_signature(sig: &Signature) -> syn::Result<()> {
    let mut errors: Vec<syn::Error> = Vec::new();
    if let Some(asyncness) = &sig.asyncness {
        errors.push(syn::Error::new(
            asyncness.span,
            "a task function cannot be async: tasks run on the executor's threads; write a \
             synchronous fn (block on the future inside it if you must)",
        ));
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.push(syn::Error::new(
            unsafety.span,
            "a task function cannot be unsafe: the scheduler calls it with no way to uphold its \
             safety contract; write a safe wrapper that checks the contract and calls it",
        ));
    }
    if sig.generics.lifetimes().count() == sig.generics.params.len() && !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a registered task function cannot declare lifetime parameters: elide them (`&[f64]`, \
             `ArrayView1<'_, f64>`) so the function has one `fn` pointer type",
        ));
    } else if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(&sig.generics, GENERIC));
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output
        && let Some(found) = find_impl_trait(ty)
    {
        errors.push(syn::Error::new_spanned(
            found,
            "a registered task function cannot return `impl Trait`: name the returned type, so \
             the function has one `fn` pointer type",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(variadic, "a task function cannot be variadic"));
    }
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "a task function cannot take `self`: register a free function (outside any impl \
                 block) that takes the value as an ordinary argument",
            )),
            FnArg::Typed(typed) => {
                if let Some(found) = find_impl_trait(&typed.ty) {
                    errors.push(syn::Error::new_spanned(
                        found,
                        format!("{GENERIC} (an `impl Trait` argument is a generic parameter)"),
                    ));
                }
            }
        }
    }
    if sig.inputs.len() > MAX_ARITY {
        errors.push(syn::Error::new_spanned(
            &sig.inputs,
            format!(
                "a task function takes at most {MAX_ARITY} parameters, this one takes {}; group \
                 some of them into a struct that derives `blockwise::Data`",
                sig.inputs.len()
            ),
        ));
    }
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            first.extend(errors);
            Err(first)
        }
    }
}

/// The first `impl Trait` anywhere inside a parameter type.
fn find_impl_trait(ty: &Type) -> Option<&syn::TypeImplTrait> {
    match ty {
        Type::ImplTrait(found) => Some(found),
        Type::Array(array) => find_impl_trait(&array.elem),
        Type::Group(group) => find_impl_trait(&group.elem),
        Type::Paren(paren) => find_impl_trait(&paren.elem),
        Type::Ptr(ptr) => find_impl_trait(&ptr.elem),
        Type::Reference(reference) => find_impl_trait(&reference.elem),
        Type::Slice(slice) => find_impl_trait(&slice.elem),
        Type::Tuple(tuple) => tuple.elems.iter().find_map(find_impl_trait),
        Type::Path(path) => path.path.segments.iter().find_map(|segment| match &segment.arguments {
            syn::PathArguments::AngleBracketed(args) => args.args.iter().find_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => find_impl_trait(ty),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    }
}
