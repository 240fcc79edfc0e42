/* SPDX-License-Identifier: MIT */
/*
 * SHMD_API: the mark on every public function, so that the shared library exports exactly the API.
 *
 * libshmdict is built with -fvisibility=hidden (meson's gnu_symbol_visibility : 'hidden'): a
 * function is exported from libshmdict.so only when its declaration in a public header says
 * SHMD_API. Internal functions (shmd__*, file-level helpers of every layer) stay inside the
 * library; programs that test or measure internals link the static library instead. A test
 * (tests/check_symbols.py) fails when the shared library exports anything else, or when a
 * function declared here lacks the mark. What is exported is the ABI that scripts/abi-check.sh
 * holds to its baseline (docs/api.md, "ABI and store-format promise").
 *
 * Windows (issue 19): a DLL exports what is marked __declspec(dllexport) while it is built and its
 * users see __declspec(dllimport). The build of the library defines SHMD_BUILDING_LIBRARY;
 * programs that link the static library define SHMD_STATIC. On ELF platforms both are ignored.
 */
#ifndef SHMD_API_H
#define SHMD_API_H

#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(SHMD_STATIC)
#define SHMD_API
#elif defined(SHMD_BUILDING_LIBRARY)
#define SHMD_API __declspec(dllexport)
#else
#define SHMD_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define SHMD_API __attribute__((visibility("default")))
#else
#define SHMD_API
#endif

#endif /* SHMD_API_H */
