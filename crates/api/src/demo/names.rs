//! Plausible names and texts for the generated history: polluters by sector, problem descriptions, case
//! numbers. All made up; a reader should recognise the kind of thing, never a real company.

use super::rng::Rng;
use rectify_domain::values::{Sector, Severity};

const SYLLABLES: [&str; 30] = [
    "鑫", "宏", "兴", "源", "华", "盛", "达", "恒", "金", "福", "泰", "丰", "龙", "新", "远", "安", "顺", "瑞", "隆",
    "昌", "吉", "祥", "德", "利", "茂", "旺", "宇", "海", "山", "川",
];

const SURNAMES: [&str; 20] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "罗", "高",
    "林",
];

/// The short form of a division's Chinese name: "开阳县" → "开阳", "松桃苗族自治县" → "松桃",
/// "黔南布依族苗族自治州" → "黔南".
pub fn short(name: &str) -> String {
    const CUTS: [&str; 10] = ["苗族", "土家族", "仡佬族", "布依族", "侗族", "彝族", "回族", "水族", "自治", "特区"];
    if let Some(i) = CUTS.iter().filter_map(|c| name.find(c)).min() {
        return name[..i].to_owned();
    }
    let mut chars: Vec<char> = name.chars().collect();
    if chars.len() > 2 && matches!(chars.last(), Some('区' | '县' | '市' | '州')) {
        chars.pop();
    }
    chars.into_iter().collect()
}

fn word(rng: &mut Rng) -> String {
    format!("{}{}", rng.pick(&SYLLABLES), rng.pick(&SYLLABLES))
}

/// A polluter or site of `sector` in the county called `county` (short form).
pub fn source(rng: &mut Rng, sector: Sector, county: &str) -> String {
    let w = word(rng);
    let templates: &[&str] = match sector {
        Sector::PhosphorusChemical => &["{c}{w}磷化工有限公司", "{c}{w}磷业有限责任公司", "{c}{w}化工有限公司"],
        Sector::Baijiu => &["{c}{w}酒业有限公司", "{c}{w}酒厂", "{c}{w}酱香酒业有限公司"],
        Sector::CoalMine => &["{c}{w}煤矿", "{c}{w}煤业有限公司", "{c}{w}煤矿（技改）"],
        Sector::IndustrialPark => &["{c}{w}工业园区", "{c}经济开发区{w}片区", "{c}{w}产业园"],
        Sector::NatureReserve => &["{c}{w}自然保护区", "{c}{w}省级自然保护区", "{c}{w}湿地公园"],
        Sector::CountySewage => &["{c}城区污水处理厂", "{c}{w}镇污水处理站", "{c}第二污水处理厂"],
        Sector::Landfill => &["{c}生活垃圾填埋场", "{c}{w}镇垃圾转运站", "{c}生活垃圾焚烧发电厂"],
        Sector::TailingsPond => &["{c}{w}矿业有限公司尾矿库", "{c}{w}锰业渣库", "{c}{w}铝业赤泥库"],
        Sector::Other => &[
            "{c}{w}水泥有限公司",
            "{c}{w}砂石厂",
            "{c}{w}生猪养殖场",
            "{c}{w}医院",
            "{c}{w}加油站",
            "{c}{w}建材有限公司",
            "{c}{w}汽修厂",
            "{c}{w}食品有限公司",
            "{c}{w}页岩砖厂",
            "{c}{w}混凝土搅拌站",
        ],
    };
    rng.pick(templates).replace("{c}", county).replace("{w}", &w)
}

/// A made-up 18-character unified social credit code of an enterprise registered in `county`.
pub fn credit_code(rng: &mut Rng, county: &str) -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
    let tail: String = (0..10).map(|_| CHARS[rng.range(0, CHARS.len() as i64 - 1) as usize] as char).collect();
    format!("91{county}{tail}")
}

/// A person in charge, anonymised the usual way ("王某").
pub fn person(rng: &mut Rng) -> String {
    format!("{}某", rng.pick(&SURNAMES))
}

/// What was wrong, by sector and severity.
pub fn description(rng: &mut Rng, sector: Sector, severity: Severity) -> String {
    let options: &[&str] = match sector {
        Sector::PhosphorusChemical => &[
            "磷石膏渣场渗滤液收集池破损 — leachate pond of the phosphogypsum yard damaged",
            "含磷废水未经处理直排 — phosphorus wastewater discharged untreated",
            "磷石膏综合利用率未达要求 — phosphogypsum reuse below the required rate",
            "雨污分流不彻底，初期雨水未收集 — first-flush rainwater not collected",
        ],
        Sector::Baijiu => &[
            "酿酒废水超标排放 — distillery wastewater above the discharge limits",
            "酒糟露天堆放，渗滤液未收集 — spent grains stored in the open, leachate not collected",
            "污水处理设施未正常运行 — wastewater treatment plant not operated",
        ],
        Sector::CoalMine => &[
            "矿井水处理站出水超标 — mine water treatment effluent above the limits",
            "煤矸石堆场未采取防渗措施 — gangue dump without seepage protection",
            "储煤场扬尘治理不到位 — dust control at the coal yard inadequate",
            "采空区生态修复滞后 — ecological restoration of mined-out area behind plan",
        ],
        Sector::IndustrialPark => &[
            "园区污水集中处理设施未建成 — park's central wastewater plant not built",
            "企业雨污管网混接 — storm and sewage pipes cross-connected",
            "危险废物贮存不规范 — hazardous waste stored improperly",
        ],
        Sector::NatureReserve => &[
            "保护区核心区内违规建设 — unauthorised construction in the reserve's core zone",
            "保护区内采砂采石 — sand and stone quarrying inside the reserve",
            "缓冲区内违规养殖 — livestock farming in the buffer zone",
        ],
        Sector::CountySewage => &[
            "污水处理厂出水氨氮超标 — ammonia nitrogen in the effluent above the limit",
            "管网覆盖不足，生活污水直排 — sewer network gaps, sewage discharged directly",
            "污泥处置不规范 — sludge disposed of improperly",
        ],
        Sector::Landfill => &[
            "渗滤液处理能力不足 — leachate treatment capacity insufficient",
            "填埋作业面未及时覆盖 — working face left uncovered",
            "渗滤液调节池满溢 — leachate equalisation pond overflowing",
        ],
        Sector::TailingsPond => &[
            "尾矿库排洪设施隐患 — flood discharge structures of the tailings pond at risk",
            "渣库渗滤液外渗 — seepage from the residue pond",
            "尾矿库闭库治理未完成 — closure of the tailings pond not completed",
        ],
        Sector::Other => &[
            "废气处理设施未正常运行 — exhaust gas treatment not operated",
            "未批先建 — built without an environmental approval",
            "养殖废水未经处理外排 — farm wastewater discharged untreated",
            "医疗废水消毒设施故障 — disinfection of hospital wastewater out of order",
            "噪声扰民 — noise nuisance to residents",
            "扬尘污染 — dust pollution",
        ],
    };
    let text = *rng.pick(options);
    match severity {
        Severity::Serious => format!("【严重 serious】{text}"),
        _ => text.to_owned(),
    }
}
