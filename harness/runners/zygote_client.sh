# The host shell's side of the pyrunner zygote (runners/zygote.py), in POSIX sh: no Python start per repetition.
#
#   sh zygote_client.sh FOLDER/req ZYGOTE_PID -- PYTHON SCRIPT ARGS...
#
# FOLDER is the zygote's private (0700) folder. The client makes its reply FIFO FOLDER/r.PID, writes ARGS
# (NUL-separated) to FOLDER/q.PID and its pid as one line to the request FIFO FOLDER/req (one short write:
# atomic among clients), then waits for the reply line. The zygote opens this shell's stdout/stderr
# through /proc/PID/fd (stdin: /dev/null) and forks a child that runs pyrunner with them, so the child writes to the caller's
# pipe itself (the host shell's kill finds it among the pipe's writers); it names the child in
# FOLDER/PID.child for the memory poller and replies with the child's exit code when it ends, or "F" when
# it cannot take the request. When this client goes away first, the zygote kills the child.
# Without a live zygote, or on "F", it execs the fresh command PYTHON SCRIPT ARGS instead (same output);
# a zygote that dies mid-request ends the reply pipe, and the client exits 1.
req=$1
zygote=$2
shift 3
dir=${req%/*}
reply="$dir/r.$$"
if kill -0 "$zygote" 2>/dev/null && [ -p "$req" ] && mkfifo -m 600 "$reply" 2>/dev/null; then
    py=$1
    script=$2
    shift 2
    # The request line from a subshell: a builtin's redirection swaps this shell's fd 1 for a moment, and the
    # zygote opens /proc/PID/fd/1 as soon as it reads the line. <> opens without waiting for a reader.
    { printf '%s\0' "$@" > "$dir/q.$$" && (printf '%s\n' "$$" 1<>"$req") && exec 3<"$reply" && read -r code <&3; } ||
        exit 1
    case $code in
        F) set -- "$py" "$script" "$@" ;;
        '' | *[!0-9]*) exit 1 ;;
        *) exit "$code" ;;
    esac
fi
exec "$@"
