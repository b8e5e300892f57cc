# Reads `mutmut results --all` ("    tfdist.gate.x_decide__mutmut_3: killed" per mutant) and
# prints, per module and in all, how many mutants the unit tests caught (killed, or made the
# tests time out), then every mutant that was not caught.
{
    sub(/^ +/, "")
    split($1, parts, ".")
    module = parts[2]
    status = $2
    if (!(module in total))
        order[++modules] = module
    total[module]++
    all++
    if (status == "killed" || status == "timeout") {
        caught[module]++
        all_caught++
    } else {
        missed = missed "  " $0 "\n"
    }
}
END {
    for (i = 1; i <= modules; i++)
        printf "%-10s %4d of %4d caught (%.1f%%)\n", order[i], caught[order[i]],
            total[order[i]], 100 * caught[order[i]] / total[order[i]]
    printf "%-10s %4d of %4d caught (%.1f%%)\n", "all", all_caught, all, 100 * all_caught / all
    if (missed != "")
        printf "not caught:\n%s", missed
}
