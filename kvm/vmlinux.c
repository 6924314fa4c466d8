#include "kvm/vmlinux.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

#define OFF_PAYLOAD_OFFSET 0x248
#define OFF_PAYLOAD_LENGTH 0x24c
#define MAX_VMLINUX        (512u << 20)

static const uint8_t xz_magic[6] = {0xfd, '7', 'z', 'X', 'Z', 0x00};

const char *vmlinux_cache_dir(void)
{
    static char dir[512];
    const char *e = getenv("NVMEVM_CACHE_DIR");
    if (e && *e)
        return e;
    if ((e = getenv("XDG_CACHE_HOME")) && *e)
        snprintf(dir, sizeof(dir), "%s/nvmevm", e);
    else if ((e = getenv("HOME")) && *e)
        snprintf(dir, sizeof(dir), "%s/.cache/nvmevm", e);
    else
        return NULL;
    return dir;
}

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

int vmlinux_parse(struct vmlinux *v, char *err, size_t errlen)
{
    Elf64_Ehdr eh;
    if (v->size < sizeof(eh) || memcmp(v->data, ELFMAG, SELFMAG) != 0) {
        return err_set(err, errlen, "decompressed kernel is not an ELF file");
    }
    memcpy(&eh, v->data, sizeof(eh));
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
        eh.e_phentsize != sizeof(Elf64_Phdr) ||
        eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr) > v->size) {
        return err_set(err, errlen, "decompressed kernel is not a valid x86-64 ELF");
    }
    v->nseg = 0;
    v->end = 0;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        memcpy(&ph, v->data + eh.e_phoff + i * sizeof(ph), sizeof(ph));
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
            continue;
        if (ph.p_offset + ph.p_filesz > v->size || ph.p_filesz > ph.p_memsz ||
            ph.p_paddr + ph.p_memsz < ph.p_paddr || v->nseg == VMLINUX_MAX_SEGMENTS) {
            return err_set(err, errlen, "decompressed kernel has a bad segment %u", i);
        }
        v->seg[v->nseg++] =
            (struct vmlinux_segment){ph.p_offset, ph.p_filesz, ph.p_paddr, ph.p_memsz};
        if (ph.p_paddr + ph.p_memsz > v->end)
            v->end = ph.p_paddr + ph.p_memsz;
    }
    /* x86 vmlinux links its entry (startup_64) at a physical address. */
    v->entry = eh.e_entry;
    if (v->nseg == 0 || v->entry >= v->end) {
        return err_set(err, errlen, "decompressed kernel has no loadable entry point");
    }
    return 0;
}

static int load_cached(const char *path, uint64_t want_size, struct vmlinux *v)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int ret = -1;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size == want_size) {
        v->data = mmap(NULL, want_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (v->data != MAP_FAILED) {
            v->size = want_size;
            v->mapped = 1;
            ret = 0;
        }
    }
    close(fd);
    return ret;
}

/* Best effort: a cache we cannot write only costs time. */
static void store_cached(const char *dir, const char *path, const struct vmlinux *v)
{
    mkdir(dir, 0700);
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    size_t done = 0;
    while (done < v->size) {
        ssize_t w = write(fd, v->data + done, v->size - done);
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    close(fd);
    if (done != v->size || rename(tmp, path) < 0)
        unlink(tmp);
}

static int xz_decompress(const uint8_t *in, size_t inlen, uint8_t *out, size_t outlen, char *err,
                         size_t errlen)
{
    lzma_stream s = LZMA_STREAM_INIT;
    if (lzma_stream_decoder(&s, UINT64_MAX, 0) != LZMA_OK) {
        return err_set(err, errlen, "liblzma: cannot start the decoder");
    }
    s.next_in = in;
    s.avail_in = inlen;
    s.next_out = out;
    s.avail_out = outlen;
    lzma_ret r = lzma_code(&s, LZMA_FINISH);
    size_t produced = outlen - s.avail_out;
    lzma_end(&s);
    /* The kernel appends its decompressed size after the stream: trailing bytes are fine. */
    if ((r != LZMA_STREAM_END && r != LZMA_DATA_ERROR) || produced != outlen) {
        return err_set(err, errlen, "xz payload did not decompress (liblzma error %d)", (int)r);
    }
    return 0;
}

int vmlinux_from_bzimage(const uint8_t *file, size_t size, const struct bzimage_info *info,
                         const char *cache_dir, struct vmlinux *v, char *err, size_t errlen)
{
    memset(v, 0, sizeof(*v));
    uint32_t off, len;
    memcpy(&off, file + OFF_PAYLOAD_OFFSET, 4);
    memcpy(&len, file + OFF_PAYLOAD_LENGTH, 4);
    const uint8_t *payload = file + info->setup_size + off;
    if (info->version < 0x0208 || len < 16 || info->setup_size + (uint64_t)off + len > size) {
        return err_set(err, errlen, "no usable payload in the bzImage");
    }
    if (memcmp(payload, xz_magic, sizeof(xz_magic)) != 0) {
        return err_set(err, errlen, "payload is not xz-compressed");
    }
    uint32_t out_size;
    memcpy(&out_size, payload + len - 4, 4);
    if (out_size < sizeof(Elf64_Ehdr) || out_size > MAX_VMLINUX) {
        return err_set(err, errlen, "implausible decompressed size %u", out_size);
    }
    char path[600] = "";
    if (cache_dir) {
        snprintf(path, sizeof(path), "%s/vmlinux-%016llx-%u", cache_dir,
                 (unsigned long long)fnv1a(payload, len), out_size);
        if (load_cached(path, out_size, v) == 0 && vmlinux_parse(v, err, errlen) == 0)
            return 0;
        vmlinux_release(v);
    }
    v->data = malloc(out_size);
    if (!v->data) {
        return err_set(err, errlen, "out of memory");
    }
    v->size = out_size;
    if (xz_decompress(payload, len, v->data, out_size, err, errlen) < 0 ||
        vmlinux_parse(v, err, errlen) < 0) {
        vmlinux_release(v);
        return -1;
    }
    if (cache_dir)
        store_cached(cache_dir, path, v);
    return 0;
}

void vmlinux_release(struct vmlinux *v)
{
    if (v->data && v->data != MAP_FAILED) {
        if (v->mapped)
            munmap(v->data, v->size);
        else
            free(v->data);
    }
    memset(v, 0, sizeof(*v));
}
