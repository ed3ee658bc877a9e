# Shared by .ci/mariadb.sh and .ci/milvus.sh (sourced, not run): the command line `ACTION DIR [PORT]`
# dispatched to the sourcing script's cmd_start PORT / cmd_stop / cmd_status, with DIR made absolute.

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
usage() { die "usage: $0 start DIR PORT | stop DIR | status DIR"; }

# Alive = exists and is not a zombie (a zombie may linger when nobody reaps it).
alive() {
    local pid=$1 stat
    [[ -n $pid && -r /proc/$pid/stat ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

dispatch() {
    [[ $# -ge 2 ]] || usage
    local action=$1
    DIR=$2
    [[ $DIR == /* ]] || DIR=$PWD/$DIR
    DIR=${DIR%/}
    case $action in
        start)  [[ $# -eq 3 ]] || usage; cmd_start "$3" ;;
        stop)   [[ $# -eq 2 ]] || usage; cmd_stop ;;
        status) [[ $# -eq 2 ]] || usage; cmd_status ;;
        *) usage ;;
    esac
}
