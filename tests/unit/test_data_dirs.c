/* Where the default guest and the sandbox scripts are found (app/data_dirs.c): each place
 * of the lookup order on a fake tree of directories. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/data_dirs.h"

static char top[PATH_MAX];
static char exe_dir[PATH_MAX + 32], data_dir[PATH_MAX + 32], src_dir[PATH_MAX + 32],
    cache_dir[PATH_MAX + 32], bin_dir[PATH_MAX + 32];
static struct data_roots roots;

static void touch(const char *dir, const char *name, mode_t mode)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "mkdir -p '%s'", dir);
    cr_assert_eq(system(path), 0);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fclose(f);
    chmod(path, mode);
}

/* <top>/prefix/bin (the binary), <top>/prefix/share/nvmevm (configured data dir),
 * <top>/src (source tree), <top>/cache: all empty. */
static void setup(void)
{
    snprintf(top, sizeof(top), "/tmp/nvmevm-data-dirs.XXXXXX");
    cr_assert_not_null(mkdtemp(top));
    snprintf(bin_dir, sizeof(bin_dir), "%s/prefix/bin", top);
    snprintf(exe_dir, sizeof(exe_dir), "%s", bin_dir);
    snprintf(data_dir, sizeof(data_dir), "%s/prefix/share/nvmevm", top);
    snprintf(src_dir, sizeof(src_dir), "%s/src", top);
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", top);
    roots = (struct data_roots){exe_dir, data_dir, bin_dir, src_dir, cache_dir};
    unsetenv("NVMEVM_GUEST_DIR");
    unsetenv("NVMEVM_SANDBOX_DIR");
    touch(exe_dir, "nvmevm", 0755);
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
    cr_assert_eq(system(cmd), 0);
}

static void expect_guest(const char *want)
{
    char dir[PATH_MAX], err[4096] = "";
    cr_assert_eq(guest_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(dir, want);
}

TestSuite(data_dirs, .init = setup, .fini = teardown);

Test(data_dirs, guest_none_names_every_place_and_the_builder)
{
    char dir[PATH_MAX], err[4096] = "", want[PATH_MAX * 4];
    cr_assert_eq(guest_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s/guest, %s/guest or %s/guest", exe_dir, data_dir, cache_dir);
    cr_assert(strstr(err, want), "%s", err);
    snprintf(want, sizeof(want), "build one with: %s/nvmevm-build-guest %s/guest", bin_dir,
             cache_dir);
    cr_assert(strstr(err, want), "%s", err);
}

Test(data_dirs, guest_order_exe_then_data_then_cache)
{
    char p[PATH_MAX * 2];
    snprintf(p, sizeof(p), "%s/guest", cache_dir);
    touch(p, "vmlinuz", 0644);
    expect_guest(p);
    snprintf(p, sizeof(p), "%s/guest", data_dir);
    touch(p, "vmlinuz", 0644);
    expect_guest(p);
    snprintf(p, sizeof(p), "%s/guest", exe_dir);
    touch(p, "vmlinuz", 0644);
    expect_guest(p);
}

Test(data_dirs, guest_beside_a_moved_install)
{
    /* The configured data dir is elsewhere; the binary's own prefix has the guest. */
    char moved_bin[PATH_MAX * 2], moved_guest[PATH_MAX * 2];
    snprintf(moved_bin, sizeof(moved_bin), "%s/moved/bin", top);
    snprintf(moved_guest, sizeof(moved_guest), "%s/moved/share/nvmevm/guest", top);
    touch(moved_bin, "nvmevm", 0755);
    touch(moved_guest, "vmlinuz", 0644);
    roots.exe_dir = moved_bin;
    expect_guest(moved_guest);
}

Test(data_dirs, guest_env_is_the_only_place)
{
    char p[PATH_MAX * 2], dir[PATH_MAX], err[4096] = "";
    snprintf(p, sizeof(p), "%s/guest", data_dir);
    touch(p, "vmlinuz", 0644);
    snprintf(p, sizeof(p), "%s/mine", top);
    setenv("NVMEVM_GUEST_DIR", p, 1);
    cr_assert_eq(guest_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), -1);
    cr_assert(strstr(err, "NVMEVM_GUEST_DIR=") && strstr(err, p), "%s", err);
    cr_assert_null(strstr(err, data_dir), "%s", err);
    touch(p, "vmlinuz", 0644);
    expect_guest(p);
}

Test(data_dirs, guest_in_a_build_tree_says_build_sh)
{
    char dir[PATH_MAX], err[4096] = "", want[PATH_MAX * 4];
    touch(exe_dir, "build.ninja", 0644);
    cr_assert_eq(guest_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "build one with: %s/guest-images/linux/build.sh %s/guest", src_dir,
             exe_dir);
    cr_assert(strstr(err, want), "%s", err);
}

Test(data_dirs, sandbox_installed_then_env)
{
    char p[PATH_MAX * 2], dir[PATH_MAX], err[4096] = "";
    cr_assert_eq(sandbox_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), -1);
    cr_assert(strstr(err, data_dir), "%s", err);
    snprintf(p, sizeof(p), "%s/sandbox", data_dir);
    touch(p, "run.sh", 0644);
    cr_assert_eq(sandbox_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), -1,
                 "run.sh must be executable");
    touch(p, "run.sh", 0755);
    cr_assert_eq(sandbox_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(dir, p);
    snprintf(p, sizeof(p), "%s/elsewhere", top);
    setenv("NVMEVM_SANDBOX_DIR", p, 1);
    cr_assert_eq(sandbox_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), -1);
    cr_assert(strstr(err, "NVMEVM_SANDBOX_DIR="), "%s", err);
    touch(p, "run.sh", 0755);
    cr_assert_eq(sandbox_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(dir, p);
}

Test(data_dirs, sandbox_build_tree_prefers_its_source)
{
    char p[PATH_MAX * 2], dir[PATH_MAX], err[4096] = "";
    snprintf(p, sizeof(p), "%s/sandbox", data_dir);
    touch(p, "run.sh", 0755);
    touch(exe_dir, "build.ninja", 0644);
    snprintf(p, sizeof(p), "%s/tests/sandbox", src_dir);
    touch(p, "run.sh", 0755);
    cr_assert_eq(sandbox_dir_find(&roots, dir, sizeof(dir), err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(dir, p);
}
