//! Mirror of `wdk-sys` 0.5.2 for `cargo xtask check-windows` (see `../README.md`): only the
//! items the vmballoon glue uses, each transcribed from the WDK C declaration in the shape
//! windows-drivers-rs's bindgen configuration produces. Types and constants at the crate
//! root, functions in [`ntddk`], as in the real crate.
#![no_std]
#![allow(
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    missing_docs,
    clippy::all
)]

mod constants;
mod types;

pub mod ntddk;

pub use constants::*;
pub use types::*;

/// `NT_SUCCESS` (ntdef.h), as wdk-sys defines it.
#[must_use]
pub const fn NT_SUCCESS(nt_status: NTSTATUS) -> bool {
    nt_status >= 0
}

/// The generated `wdf` module's private helper the WDF call macro uses.
pub mod wdf {
    #[doc(hidden)]
    pub mod __private {
        /// `WdfFunctionCount` (KMDF >= 1.25 exports it).
        pub fn get_wdf_function_count() -> usize {
            // SAFETY: a static WDF sets before DriverEntry and never changes (mirror).
            (unsafe { crate::WdfFunctionCount }) as usize
        }
    }
}

/// Calls the WDF function table entry `$index` as `$pfn`, with `WdfDriverGlobals` first:
/// the body wdk-macros generates for `call_unsafe_wdf_function_binding!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __wdf_table_call {
    ($pfn:ident, $index:ident, $($arg:ident),*) => {{
        // SAFETY: (mirror, type-checked only, never run) WDF fills the table before
        // DriverEntry and it holds `WdfFunctionCount` entries, as in the generated code.
        let table = unsafe {
            ::core::slice::from_raw_parts(
                $crate::WdfFunctions,
                $crate::wdf::__private::get_wdf_function_count(),
            )
        };
        // SAFETY: (mirror) entry `$index` has the `$pfn` signature by WDF's table layout.
        let f: $crate::$pfn =
            unsafe { ::core::mem::transmute(table[$crate::_WDFFUNCENUM::$index as usize]) };
        match f {
            // SAFETY: (mirror) the caller's `unsafe` block carries the function's contract.
            Some(f) => unsafe { f($crate::WdfDriverGlobals, $($arg),*) },
            None => unreachable!("Option should never be None"),
        }
    }};
}

/// `call_unsafe_wdf_function_binding!(WdfXxx, args...)`: the WDF functions the glue uses,
/// each with the parameter list of its `PFN_WDFXXX` typedef minus `DriverGlobals`. Like the
/// real macro it expands to a call of a private `unsafe fn`, so it must sit in an `unsafe`
/// block, arguments coerce to the declared parameter types, and a non-unit result is
/// `#[must_use]`.
#[macro_export]
macro_rules! call_unsafe_wdf_function_binding {
    (WdfDriverCreate $(, $arg:expr)* $(,)?) => {{
        mod private__ {
            use $crate::*;
            #[must_use]
            #[inline(always)]
            pub unsafe fn wdf_driver_create(
                DriverObject: PDRIVER_OBJECT,
                RegistryPath: PCUNICODE_STRING,
                DriverAttributes: PWDF_OBJECT_ATTRIBUTES,
                DriverConfig: PWDF_DRIVER_CONFIG,
                Driver: *mut WDFDRIVER,
            ) -> NTSTATUS {
                $crate::__wdf_table_call!(
                    PFN_WDFDRIVERCREATE,
                    WdfDriverCreateTableIndex,
                    DriverObject,
                    RegistryPath,
                    DriverAttributes,
                    DriverConfig,
                    Driver
                )
            }
        }
        private__::wdf_driver_create($($arg),*)
    }};
    (WdfDriverOpenParametersRegistryKey $(, $arg:expr)* $(,)?) => {{
        mod private__ {
            use $crate::*;
            #[must_use]
            #[inline(always)]
            pub unsafe fn wdf_driver_open_parameters_registry_key(
                Driver: WDFDRIVER,
                DesiredAccess: ACCESS_MASK,
                KeyAttributes: PWDF_OBJECT_ATTRIBUTES,
                Key: *mut WDFKEY,
            ) -> NTSTATUS {
                $crate::__wdf_table_call!(
                    PFN_WDFDRIVEROPENPARAMETERSREGISTRYKEY,
                    WdfDriverOpenParametersRegistryKeyTableIndex,
                    Driver,
                    DesiredAccess,
                    KeyAttributes,
                    Key
                )
            }
        }
        private__::wdf_driver_open_parameters_registry_key($($arg),*)
    }};
    (WdfRegistryQueryULong $(, $arg:expr)* $(,)?) => {{
        mod private__ {
            use $crate::*;
            #[must_use]
            #[inline(always)]
            pub unsafe fn wdf_registry_query_ulong(
                Key: WDFKEY,
                ValueName: PCUNICODE_STRING,
                Value: PULONG,
            ) -> NTSTATUS {
                $crate::__wdf_table_call!(
                    PFN_WDFREGISTRYQUERYULONG,
                    WdfRegistryQueryULongTableIndex,
                    Key,
                    ValueName,
                    Value
                )
            }
        }
        private__::wdf_registry_query_ulong($($arg),*)
    }};
    (WdfRegistryClose $(, $arg:expr)* $(,)?) => {{
        mod private__ {
            use $crate::*;
            #[inline(always)]
            pub unsafe fn wdf_registry_close(Key: WDFKEY) {
                $crate::__wdf_table_call!(PFN_WDFREGISTRYCLOSE, WdfRegistryCloseTableIndex, Key)
            }
        }
        private__::wdf_registry_close($($arg),*)
    }};
}
