#!/bin/bash
# Every Linux-guest suite, in one place (run directly or inside one sandbox session).
"$(dirname "$0")/suite.sh"
"$(dirname "$0")/suite-nvme.sh"
"$(dirname "$0")/suite-migrate.sh"
"$(dirname "$0")/suite-fio.sh"
"$(dirname "$0")/suite-stats.sh"
