#include "size.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

static int suffix_shift(const char **p, unsigned bare_shift)
{
    const char *s = *p;
    unsigned shift;
    switch (*s) {
    case '\0':
        return (int)bare_shift;
    case 'b':
    case 'B':
        *p = s + 1;
        return **p ? -1 : 0;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case 't':
    case 'T':
        shift = 40;
        break;
    default:
        return -1;
    }
    s++;
    if (*s == 'i')
        s++;
    if (*s == 'B' || *s == 'b')
        s++;
    *p = s;
    return *s ? -1 : (int)shift;
}

int parse_size_unit(const char *s, unsigned bare_shift, uint64_t *out)
{
    if (!s || !isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long whole = strtoull(s, &end, 10);
    if (errno)
        return -1;
    /* The fraction as frac / 10^digits, kept exact (at most 18 digits fit in 64 bits). */
    uint64_t frac = 0, scale = 1;
    if (*end == '.') {
        end++;
        if (!isdigit((unsigned char)*end))
            return -1;
        for (; isdigit((unsigned char)*end); end++) {
            if (scale >= 1000000000000000000ULL)
                return -1;
            frac = frac * 10 + (uint64_t)(*end - '0');
            scale *= 10;
        }
    }
    const char *p = end;
    int shift = suffix_shift(&p, bare_shift);
    if (shift < 0 || whole > (UINT64_MAX >> shift))
        return -1;
    uint64_t v = (uint64_t)whole << shift;
    if (frac) {
        /* frac << shift must divide by scale exactly: whole bytes only. */
        unsigned __int128 f = (unsigned __int128)frac << shift;
        if (f % scale)
            return -1;
        uint64_t add = (uint64_t)(f / scale);
        if (v > UINT64_MAX - add)
            return -1;
        v += add;
    }
    *out = v;
    return 0;
}

int parse_size(const char *s, uint64_t *out)
{
    return parse_size_unit(s, 0, out);
}
