//! Element types: what an [`Array`](crate::Array) may hold, and the scalar
//! arithmetic every kernel is written against.
//!
//! Six types, as NumPy's common ones: `f64`, `f32`, `i64`, `i32`, `u8` and
//! `bool`. Three traits split them by what makes sense:
//!
//! - [`Element`]: all six. Comparisons, `where`, casting, storage.
//! - [`Number`]: the five numeric types. Arithmetic, sums, products, min/max.
//!   Operators mean what Rust's mean (`/` truncates integers, `%` takes the
//!   sign of the dividend), except that integer overflow wraps and integer
//!   division by zero gives 0, as NumPy does (without its warning): no user
//!   value can make a task panic.
//! - [`Float`]: `f64` and `f32`. The math functions (`sqrt`, `exp`, `sin`…)
//!   and NaN handling. An integer array is cast first (`astype::<f64>()`),
//!   which keeps every kernel's output type visible in the Rust type.
//!
//! Casting between any two of the six ([`CastTo`]) follows Rust's `as`:
//! float → int truncates toward zero and saturates (NaN gives 0), numbers →
//! bool is "not zero", bool → number is 0 or 1.

use std::fmt::{Debug, Display};

use blockwise_core::ndarray_data::NdElement;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type an array may hold.
pub trait Element:
    NdElement + PartialEq + PartialOrd + Default + Debug + Display + Serialize + DeserializeOwned + CastTo<f64>
{
    /// The `.npy` type descriptor (little-endian), as NumPy writes it.
    const NPY_DESCR: &'static str;
    /// Whether a NaN of this type exists (floats only).
    const HAS_NAN: bool = false;

    /// Whether the value is NaN (always false for non-floats).
    fn is_nan_value(self) -> bool {
        false
    }

    /// Whether the value counts as true (`!= 0`, or the bool itself).
    fn truthy(self) -> bool;

    /// Feeds the value to a tokenizer, for deterministic names.
    fn token(self) -> u64;
}

/// A numeric element type: `f64`, `f32`, `i64`, `i32`, `u8`.
pub trait Number: Element {
    /// The additive identity.
    fn zero() -> Self;
    /// The multiplicative identity.
    fn one() -> Self;
    /// The largest value (or +∞): the identity of `min`.
    fn max_value() -> Self;
    /// The smallest value (or −∞): the identity of `max`.
    fn min_value() -> Self;
    /// `a + b` (wrapping for integers).
    fn add(self, other: Self) -> Self;
    /// `a - b` (wrapping for integers).
    fn sub(self, other: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(self, other: Self) -> Self;
    /// `a / b` (integers: truncating as Rust's `/`, 0 when `b` is 0).
    fn div(self, other: Self) -> Self;
    /// `a % b` as Rust's `%`: the sign of `a` (integers: 0 when `b` is 0).
    fn rem(self, other: Self) -> Self;
    /// `a ** b` (integers: wrapping, `b` taken as an unsigned exponent, 0 when negative).
    fn pow(self, other: Self) -> Self;
    /// `-a` (wrapping for integers; `u8` wraps to `256 - a`).
    fn neg(self) -> Self;
    /// `|a|` (wrapping for the most negative integer).
    fn abs(self) -> Self;
    /// −1, 0 or 1 (NaN stays NaN).
    fn signum(self) -> Self;
    /// The larger of two values; NaN if either is NaN (NumPy's `maximum`).
    fn maximum(self, other: Self) -> Self {
        if self.is_nan_value() {
            self
        } else if other.is_nan_value() || other > self {
            other
        } else {
            self
        }
    }
    /// The smaller of two values; NaN if either is NaN (NumPy's `minimum`).
    fn minimum(self, other: Self) -> Self {
        if self.is_nan_value() {
            self
        } else if other.is_nan_value() || other < self {
            other
        } else {
            self
        }
    }
    /// The value as `f64` (may round for large `i64`).
    fn to_f64(self) -> f64;
    /// The nearest value of this type to `x` (`as` semantics).
    fn from_f64(x: f64) -> Self;
    /// The value of this type for an index or count.
    fn from_usize(x: usize) -> Self;
}

/// A floating-point element type: `f64`, `f32`.
pub trait Float: Number {
    /// Not a number.
    fn nan() -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Cube root.
    fn cbrt(self) -> Self;
    /// `e^x`.
    fn exp(self) -> Self;
    /// `e^x - 1`, accurate near 0.
    fn exp_m1(self) -> Self;
    /// `2^x`.
    fn exp2(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// `ln(1 + x)`, accurate near 0.
    fn ln_1p(self) -> Self;
    /// Base-2 logarithm.
    fn log2(self) -> Self;
    /// Base-10 logarithm.
    fn log10(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Tangent.
    fn tan(self) -> Self;
    /// Arcsine.
    fn asin(self) -> Self;
    /// Arccosine.
    fn acos(self) -> Self;
    /// Arctangent.
    fn atan(self) -> Self;
    /// Hyperbolic sine.
    fn sinh(self) -> Self;
    /// Hyperbolic cosine.
    fn cosh(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// Largest integer not above.
    fn floor(self) -> Self;
    /// Smallest integer not below.
    fn ceil(self) -> Self;
    /// Nearest integer, halves to even (NumPy's `round`).
    fn round_even(self) -> Self;
    /// Integer part.
    fn trunc(self) -> Self;
    /// Whether finite (not NaN, not ±∞).
    fn is_finite(self) -> bool;
    /// Whether ±∞.
    fn is_infinite(self) -> bool;
    /// `atan2(self, other)`.
    fn atan2(self, other: Self) -> Self;
    /// `sqrt(self² + other²)` without overflow.
    fn hypot(self, other: Self) -> Self;
}

/// Conversion of one element type into another, with `as` semantics.
pub trait CastTo<U>: Sized {
    /// The value as a `U`.
    fn cast(self) -> U;
}

macro_rules! element_common {
    ($t:ty, $descr:expr) => {
        const NPY_DESCR: &'static str = $descr;
    };
}

macro_rules! float_impl {
    ($t:ty, $descr:expr) => {
        impl Element for $t {
            element_common!($t, $descr);
            const HAS_NAN: bool = true;
            #[inline]
            fn is_nan_value(self) -> bool {
                self.is_nan()
            }
            #[inline]
            fn truthy(self) -> bool {
                self != 0.0
            }
            fn token(self) -> u64 {
                f64::from(self).to_bits()
            }
        }

        impl Number for $t {
            #[inline]
            fn zero() -> Self {
                0.0
            }
            #[inline]
            fn one() -> Self {
                1.0
            }
            #[inline]
            fn max_value() -> Self {
                <$t>::INFINITY
            }
            #[inline]
            fn min_value() -> Self {
                <$t>::NEG_INFINITY
            }
            #[inline]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline]
            fn sub(self, o: Self) -> Self {
                self - o
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline]
            fn div(self, o: Self) -> Self {
                self / o
            }
            #[inline]
            fn rem(self, o: Self) -> Self {
                self % o
            }
            #[inline]
            fn pow(self, o: Self) -> Self {
                self.powf(o)
            }
            #[inline]
            fn neg(self) -> Self {
                -self
            }
            #[inline]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline]
            fn signum(self) -> Self {
                if self.is_nan() {
                    self
                } else if self > 0.0 {
                    1.0
                } else if self < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            #[inline]
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn from_usize(x: usize) -> Self {
                x as $t
            }
        }

        impl Float for $t {
            #[inline]
            fn nan() -> Self {
                <$t>::NAN
            }
            #[inline]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline]
            fn cbrt(self) -> Self {
                <$t>::cbrt(self)
            }
            #[inline]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline]
            fn exp_m1(self) -> Self {
                <$t>::exp_m1(self)
            }
            #[inline]
            fn exp2(self) -> Self {
                <$t>::exp2(self)
            }
            #[inline]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline]
            fn ln_1p(self) -> Self {
                <$t>::ln_1p(self)
            }
            #[inline]
            fn log2(self) -> Self {
                <$t>::log2(self)
            }
            #[inline]
            fn log10(self) -> Self {
                <$t>::log10(self)
            }
            #[inline]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline]
            fn tan(self) -> Self {
                <$t>::tan(self)
            }
            #[inline]
            fn asin(self) -> Self {
                <$t>::asin(self)
            }
            #[inline]
            fn acos(self) -> Self {
                <$t>::acos(self)
            }
            #[inline]
            fn atan(self) -> Self {
                <$t>::atan(self)
            }
            #[inline]
            fn sinh(self) -> Self {
                <$t>::sinh(self)
            }
            #[inline]
            fn cosh(self) -> Self {
                <$t>::cosh(self)
            }
            #[inline]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline]
            fn floor(self) -> Self {
                <$t>::floor(self)
            }
            #[inline]
            fn ceil(self) -> Self {
                <$t>::ceil(self)
            }
            #[inline]
            fn round_even(self) -> Self {
                <$t>::round_ties_even(self)
            }
            #[inline]
            fn trunc(self) -> Self {
                <$t>::trunc(self)
            }
            #[inline]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline]
            fn is_infinite(self) -> bool {
                <$t>::is_infinite(self)
            }
            #[inline]
            fn atan2(self, o: Self) -> Self {
                <$t>::atan2(self, o)
            }
            #[inline]
            fn hypot(self, o: Self) -> Self {
                <$t>::hypot(self, o)
            }
        }
    };
}

float_impl!(f64, "<f8");
float_impl!(f32, "<f4");

macro_rules! int_impl {
    ($t:ty, $descr:expr) => {
        impl Element for $t {
            element_common!($t, $descr);
            #[inline]
            fn truthy(self) -> bool {
                self != 0
            }
            fn token(self) -> u64 {
                self as u64
            }
        }

        impl Number for $t {
            #[inline]
            fn zero() -> Self {
                0
            }
            #[inline]
            fn one() -> Self {
                1
            }
            #[inline]
            fn max_value() -> Self {
                <$t>::MAX
            }
            #[inline]
            fn min_value() -> Self {
                <$t>::MIN
            }
            #[inline]
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline]
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline]
            fn div(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_div(o) }
            }
            #[inline]
            fn rem(self, o: Self) -> Self {
                if o == 0 { 0 } else { self.wrapping_rem(o) }
            }
            #[inline]
            #[allow(unused_comparisons)]
            fn pow(self, o: Self) -> Self {
                if o < 0 {
                    0
                } else {
                    self.wrapping_pow(u32::try_from(o).unwrap_or(u32::MAX))
                }
            }
            #[inline]
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            #[inline]
            #[allow(unused_comparisons)]
            fn abs(self) -> Self {
                if self < 0 { self.wrapping_neg() } else { self }
            }
            #[inline]
            #[allow(unused_comparisons)]
            fn signum(self) -> Self {
                if self > 0 {
                    1
                } else if self < 0 {
                    (0 as $t).wrapping_sub(1)
                } else {
                    0
                }
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline]
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            #[inline]
            fn from_usize(x: usize) -> Self {
                x as $t
            }
        }
    };
}

int_impl!(i64, "<i8");
int_impl!(i32, "<i4");
int_impl!(u8, "|u1");

impl Element for bool {
    const NPY_DESCR: &'static str = "|b1";
    #[inline]
    fn truthy(self) -> bool {
        self
    }
    fn token(self) -> u64 {
        u64::from(self)
    }
}

macro_rules! cast_numbers {
    ($($from:ty),*; $to:tt) => {$(
        impl CastTo<$to> for $from {
            #[inline]
            fn cast(self) -> $to {
                self as $to
            }
        }
    )*};
}
macro_rules! cast_all {
    ($($to:tt),*) => {$(
        cast_numbers!(f64, f32, i64, i32, u8; $to);
        impl CastTo<$to> for bool {
            #[inline]
            fn cast(self) -> $to {
                u8::from(self) as $to
            }
        }
    )*};
}
cast_all!(f64, f32, i64, i32, u8);

macro_rules! cast_to_bool {
    ($($from:ty),*) => {$(
        impl CastTo<bool> for $from {
            #[inline]
            fn cast(self) -> bool {
                self.truthy()
            }
        }
    )*};
}
cast_to_bool!(f64, f32, i64, i32, u8, bool);

/// Calls a macro once per element type, with the type and its name.
macro_rules! for_each_dtype {
    ($mac:ident $(, $arg:tt)*) => {
        $mac!(f64 $(, $arg)*);
        $mac!(f32 $(, $arg)*);
        $mac!(i64 $(, $arg)*);
        $mac!(i32 $(, $arg)*);
        $mac!(u8 $(, $arg)*);
        $mac!(bool $(, $arg)*);
    };
}
pub(crate) use for_each_dtype;

/// Calls a macro once per numeric element type.
macro_rules! for_each_number {
    ($mac:ident $(, $arg:tt)*) => {
        $mac!(f64 $(, $arg)*);
        $mac!(f32 $(, $arg)*);
        $mac!(i64 $(, $arg)*);
        $mac!(i32 $(, $arg)*);
        $mac!(u8 $(, $arg)*);
    };
}
pub(crate) use for_each_number;

/// Calls a macro once per float element type.
macro_rules! for_each_float {
    ($mac:ident $(, $arg:tt)*) => {
        $mac!(f64 $(, $arg)*);
        $mac!(f32 $(, $arg)*);
    };
}
pub(crate) use for_each_float;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_arithmetic_never_panics_and_follows_numpy() {
        assert_eq!(Number::div(7i32, 0), 0);
        assert_eq!(Number::rem(7i32, 0), 0);
        assert_eq!(Number::div(-7i64, 2), -3);
        assert_eq!(Number::rem(-7i64, 2), -1);
        assert_eq!(Number::div(i32::MIN, -1), i32::MIN);
        assert_eq!(Number::add(250u8, 10), 4);
        assert_eq!(Number::neg(i32::MIN), i32::MIN);
        assert_eq!(Number::pow(2i64, 10), 1024);
        assert_eq!(Number::pow(2i64, -1), 0);
        assert_eq!(Number::rem(-7.0f64, 2.0), -1.0);
    }

    #[test]
    fn min_max_propagate_nan() {
        assert!(Number::maximum(f64::NAN, 1.0).is_nan());
        assert!(Number::maximum(1.0, f64::NAN).is_nan());
        assert_eq!(Number::minimum(3i32, -2), -2);
    }

    #[test]
    fn casts_follow_as() {
        assert_eq!(CastTo::<i32>::cast(-2.7f64), -2);
        assert_eq!(CastTo::<u8>::cast(300.0f64), 255);
        assert!(CastTo::<bool>::cast(0.5f32));
        assert_eq!(CastTo::<f64>::cast(true), 1.0);
    }
}
