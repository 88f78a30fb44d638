# fish completion for netevd(8)
complete -c netevd -f
complete -c netevd -s c -l config -r -F -d 'configuration file'
complete -c netevd -s f -l foreground -d 'stay in the foreground and log to stderr'
complete -c netevd -l validate -d 'check the configuration and exit'
complete -c netevd -s n -l dry-run -d 'watch and log events, but run no hooks'
complete -c netevd -s v -l verbose -d 'more logging'
complete -c netevd -s V -l version -d 'print the version and exit'
complete -c netevd -l pidfile -r -F -d 'write the process id to this file'
complete -c netevd -s h -l help -d 'print the flags'
