# bash completion for netevd(8)
# shellcheck shell=bash

_netevd() {
    local cur prev
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    case $prev in
    -c | --config | --pidfile)
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    esac
    local flags="--config --foreground --validate --dry-run --verbose --version --pidfile --help"
    mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
}
complete -o filenames -F _netevd netevd
