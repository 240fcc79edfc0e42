/* SPDX-License-Identifier: MIT */
/* Internal: the per-thread detail message behind shmd_errdetail(), and the corruption breakpoint. */
#ifndef SHMD_SEGMENTS_ERR_H
#define SHMD_SEGMENTS_ERR_H

/* Records a printf-style detail for the calling thread's last failure. */
void shmd__set_detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Records "corruption at FILE:LINE: what" and returns SHMD_ECORRUPT (SQLite's CORRUPT_BKPT). */
int shmd__corrupt_at(const char *file, int line, const char *what);
#define SHMD_CORRUPT(what) shmd__corrupt_at(__FILE__, __LINE__, (what))

#endif
