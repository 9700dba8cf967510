"""Hand-written multilingual shopping vocabulary for the demo catalog (words only; grammar is in ``demo_grammar``).

Each row lists one concept in six languages, in the order ``en | id | ms | th | vi | fil``; within a language,
``/`` separates synonyms, the first being the form sellers write in titles and the rest what shoppers also type.
"""
from __future__ import annotations

from dataclasses import dataclass

# The default catalog size (read by the CLIs without importing the generator), chosen for `hetmoe demo` to take about
# 3 minutes on 2 shared CPU cores with its four experts: at 300 and 300 it used 200 s of CPU (4 min 52 s wall on a
# machine whose other work left it 0.7 of a core), two thirds of it fitting the variants.
ITEMS_PER_MARKET = 250
QUERIES_PER_MARKET = 400

LANGS = ("en", "id", "ms", "th", "vi", "fil")
MARKET_LANG = {"ID": "id", "TH": "th", "VN": "vi", "MY": "ms", "PH": "fil", "SG": "en"}
Words = dict[str, tuple[str, ...]]


def _row(line: str) -> Words:
    cells = [cell.strip() for cell in line.split("|")]
    assert len(cells) == len(LANGS), line
    return {lang: tuple(w.strip() for w in cell.split("/")) for lang, cell in zip(LANGS, cells)}


def _table(rows: dict[str, str]) -> dict[str, Words]:
    return {key: _row(line) for key, line in rows.items()}


COLOURS = _table({
    "black": "black | hitam | hitam | ดำ | đen | itim",
    "white": "white | putih | putih | ขาว | trắng | puti",
    "red": "red | merah | merah | แดง | đỏ | pula",
    "blue": "blue/navy | biru | biru | น้ำเงิน/ฟ้า | xanh dương/xanh navy | asul/blue",
    "green": "green | hijau | hijau | เขียว | xanh lá | berde/green",
    "pink": "pink | merah muda/pink | merah jambu/pink | ชมพู | hồng | rosas/pink",
    "grey": "grey/gray | abu-abu/abu | kelabu | เทา | xám/ghi | abo/gray",
    "yellow": "yellow | kuning | kuning | เหลือง | vàng | dilaw/yellow",
})

AUDIENCES = _table({
    "men": "men's/men/male | pria/cowok/laki | lelaki/men | ผู้ชาย/ชาย | nam | panlalaki/lalaki/men",
    "women": "women's/women/ladies | wanita/cewek/perempuan | wanita/perempuan/women | ผู้หญิง/หญิง | nữ | pambabae/babae/women",
    "kids": "kids'/kids/children | anak/anak-anak/kids | kanak-kanak/budak/kids | เด็ก | trẻ em/bé | pambata/bata/kids",
})

MATERIALS = _table({
    "cotton": "cotton | katun/cotton | kapas/cotton | ผ้าฝ้าย/คอตตอน | cotton/vải cotton | koton/cotton",
    "polyester": "polyester | polyester/poliester | poliester | โพลีเอสเตอร์ | polyester | polyester",
    "leather": "leather | kulit | kulit | หนัง | da | katad/leather",
    "canvas": "canvas | kanvas | kanvas | ผ้าใบ | vải canvas/vải bố | canvas",
    "mesh": "mesh | jaring/mesh | jaring/mesh | ผ้าตาข่าย | lưới | mesh",
    "stainless": "stainless steel/stainless | stainless/stenlis | keluli tahan karat/stainless | สแตนเลส | inox | stainless",
    "plastic": "plastic | plastik | plastik | พลาสติก | nhựa | plastik/plastic",
    "silicone": "silicone | silikon | silikon | ซิลิโคน | silicon | silicone",
    "glass": "glass | kaca | kaca | แก้ว | thủy tinh | salamin/glass",
    "nonstick": "non-stick/nonstick | anti lengket/teflon | tidak melekat/non-stick | เคลือบกันติด/non-stick | chống dính | non-stick",
    "castiron": "cast iron | besi cor | besi tuang | เหล็กหล่อ | gang | cast iron",
})

# How sellers label a size of each kind in titles, per language; "{v}" is the size value.
SIZE_LABELS: dict[str, Words] = _table({
    "apparel": "Size {v} | Ukuran {v} | Saiz {v} | ไซส์ {v} | Size {v} | Size {v}",
    "shoe": "EU {v} | Size {v} | Saiz {v} | เบอร์ {v} | Size {v} | Size {v}",
    "litre": "{v}L | {v} Liter | {v} Liter | {v} ลิตร | {v} lít | {v}L",
    "ml": "{v}ml | {v}ml | {v}ml | {v} มล. | {v}ml | {v}ml",
    "cm": "{v}cm | {v} cm | {v}cm | {v} ซม. | {v}cm | {v}cm",
    "inch": "{v} inch | {v} Inch | {v} Inci | {v} นิ้ว | {v} inch | {v} inch",
    "bed": "{v} | {v} | {v} | {v} | {v} | {v}",
    "phone": "for {v} | untuk {v} | untuk {v} | สำหรับ {v} | cho {v} | para sa {v}",
})
# How shoppers type a size of each kind (besides the bare value); "{v}" is the value.
SIZE_QUERY_FORMS: dict[str, Words] = _table({
    "apparel": "size {v}/{v}/sz {v} | {v}/uk {v}/size {v} | {v}/saiz {v}/size {v} | ไซส์{v}/{v}/ไซส์ {v} | size {v}/{v}/sz {v} | size {v}/{v}",
    "shoe": "size {v}/{v}/eu{v} | {v}/no {v}/size {v} | {v}/saiz {v}/size {v} | เบอร์{v}/{v}/เบอร์ {v} | size {v}/{v}/sz{v} | size {v}/{v}",
    "litre": "{v}L/{v} litre/{v}l | {v} liter/{v}L/{v}l | {v} liter/{v}L/{v} litre | {v}ลิตร/{v} ลิตร/{v}L | {v} lít/{v}l/{v} lit | {v}L/{v} liter",
    "ml": "{v}ml/{v} ml | {v}ml/{v} ml | {v}ml/{v} ml | {v}มล/{v}ml/{v} มล | {v}ml/{v} ml | {v}ml/{v} ml",
    "cm": "{v}cm/{v} cm | {v}cm/{v} cm/uk {v} | {v}cm/{v} cm | {v}ซม/{v} ซม/{v}cm | {v}cm/size {v} | {v}cm/{v} cm",
    "inch": "{v} inch/{v}in/{v}\" | {v} inch/{v} inci/{v}\" | {v} inci/{v} inch | {v}นิ้ว/{v} นิ้ว | {v} inch/{v}in | {v} inch/{v}\"",
    "bed": "{v} | {v} | {v} | {v} | {v} | {v}",
    "phone": "{v} | {v} | {v} | {v} | {v} | {v}",
})

# Size values per kind, and the market-specific names of the bed sizes and phone models shoppers use.
SIZES = {
    "apparel": ("S", "M", "L", "XL"),
    "shoe": ("38", "39", "40", "41", "42", "43", "44"),
    "rice": ("1", "1.8", "2.2"),
    "jug": ("1", "1.5", "2"),
    "bag": ("20", "30", "40"),
    "ml": ("350", "500", "750", "1000"),
    "ml_small": ("50", "100", "150"),
    "cm": ("20", "24", "28", "32"),
    "inch": ("12", "16", "18"),
    "bed": ("single", "queen", "king"),
    "phone": ("iphone13", "iphone15", "galaxya54", "redminote12", "oppoa78"),
}
SIZE_KIND = {"rice": "litre", "jug": "litre", "bag": "litre", "ml_small": "ml"}
BED = _table({
    "single": "Single/single bed | Single 120x200/single/120x200 | Bujang/single | 3.5 ฟุต/3.5ฟุต | 1m2/1m2x2m/120x200 | Single/single",
    "queen": "Queen/queen size | Queen 160x200/queen/160x200 | Queen/queen size | 5 ฟุต/5ฟุต | 1m6/1m6x2m/160x200 | Queen/queen size",
    "king": "King/king size | King 180x200/king/180x200 | King/king size | 6 ฟุต/6ฟุต | 1m8/1m8x2m/180x200 | King/king size",
})
PHONES = {
    "iphone13": ("iPhone 13", "iphone 13", "ip13", "iphone13", "ip 13"),
    "iphone15": ("iPhone 15", "iphone 15", "ip15", "iphone15", "ip 15"),
    "galaxya54": ("Samsung Galaxy A54", "samsung a54", "a54", "galaxy a54", "ss a54"),
    "redminote12": ("Redmi Note 12", "redmi note 12", "redmi note12", "note 12", "xiaomi note 12"),
    "oppoa78": ("OPPO A78", "oppo a78", "a78", "oppo a78 5g"),
}
# Thai shoppers often type a brand in Thai script while sellers keep it in Latin.
THAI_BRANDS = {"Philips": "ฟิลิปส์", "Panasonic": "พานาโซนิค", "Sharp": "ชาร์ป", "Samsung": "ซัมซุง", "Nike": "ไนกี้",
               "Adidas": "อาดิดาส", "Sony": "โซนี่", "Tefal": "ทีฟาล์ว", "Uniqlo": "ยูนิโคล่", "Hatari": "ฮาตาริ",
               "Xiaomi": "เสี่ยวหมี่", "Toshiba": "โตชิบา", "Asics": "เอสิคส์", "Skechers": "สเก็ตเชอร์ส", "Tiger": "ไทเกอร์",
               "Zojirushi": "โซจิรูชิ", "Oster": "ออสเตอร์", "Miyako": "มิยาโกะ"}
# Model numbers of the appliance and electronics families: the brand's prefix and a number; families of one brand get
# numbers close to each other (HD3128 / HD3132), which embeddings barely tell apart and lexical match does.
MODEL_PREFIX = {
    "Philips": "HD", "Panasonic": "SR", "Sharp": "KS", "Miyako": "MCM", "Cosmos": "CRJ", "Toshiba": "RC",
    "Sunhouse": "SHD", "Oster": "BLST", "Hatari": "HT", "KDK": "N", "Senko": "DN", "Asahi": "SF", "JBL": "T",
    "Sony": "WF-C", "Xiaomi": "M", "Baseus": "WM", "Soundcore": "A", "Samsung": "R",
}
MODEL_SERIES = {"rice_cooker": "31", "blender": "21", "fan": "16", "earbuds": "5"}  # category -> the numbers' head


@dataclass(frozen=True)
class Category:
    """A product type: its names, which attributes its products vary in, and its brands."""

    key: str
    names: Words
    size: str | None  # key of SIZES, or None
    colour: bool
    audiences: tuple[str, ...]
    materials: tuple[str, ...]
    brands: tuple[str, ...]


def _cat(key: str, names: str, size: str | None, colour: bool, audiences: str, materials: str, brands: str) -> Category:
    return Category(key, _row(names), size, colour, tuple(audiences.split()), tuple(materials.split()), tuple(brands.split(",")))


CATEGORIES: tuple[Category, ...] = (
    _cat("tshirt", "T-Shirt/tshirt/tee/t shirt | Kaos/kaos/baju kaos/tshirt | Baju T/t-shirt/baju-t | เสื้อยืด/เสื้อ | Áo thun/áo phông/áo | T-Shirt/damit/tshirt/tisert",
         "apparel", True, "men women kids", "cotton polyester", "Uniqlo,H&M,Giordano,Erigo,Bench,Padini,Cotton On"),
    _cat("shoes", "Running Shoes/sneakers/running shoe | Sepatu Lari/sepatu olahraga/sepatu running/sneakers | Kasut Lari/kasut sukan/sneakers | รองเท้าวิ่ง/รองเท้าผ้าใบ/รองเท้า | Giày chạy bộ/giày thể thao/giày sneaker | Running Shoes/rubber shoes/sapatos",
         "shoe", True, "men women kids", "mesh leather canvas", "Nike,Adidas,Asics,Skechers,Ventela,Bata,Li-Ning"),
    _cat("backpack", "Backpack/bag/school bag | Tas Ransel/ransel/tas punggung/backpack | Beg Galas/beg sekolah/backpack | กระเป๋าเป้/เป้/กระเป๋าสะพายหลัง | Balo/ba lô/balo laptop | Backpack/bag/bag pang-eskwela",
         "bag", True, "", "canvas polyester leather", "Eiger,JanSport,Samsonite,Herschel,Exsport,Bodypack"),
    _cat("rice_cooker", "Rice Cooker/rice cooker/ricecooker | Rice Cooker/penanak nasi/magic com/magicom | Periuk Nasi/rice cooker/periuk nasi elektrik | หม้อหุงข้าว/หม้อหุงข้าวไฟฟ้า | Nồi cơm điện/nồi cơm | Rice Cooker/lutuan ng kanin/ricecooker",
         "rice", True, "", "nonstick stainless", "Philips,Panasonic,Sharp,Miyako,Cosmos,Toshiba,Sunhouse"),
    _cat("blender", "Blender/juicer/blender jug | Blender/blender buah/juicer | Pengisar/blender/pengisar jus | เครื่องปั่น/เครื่องปั่นน้ำผลไม้ | Máy xay sinh tố/máy xay | Blender/panghalo/juicer",
         "jug", True, "", "glass plastic", "Philips,Panasonic,Sharp,Miyako,Cosmos,Oster"),
    _cat("bottle", "Water Bottle/tumbler/drinking bottle | Botol Minum/tumbler/botol air | Botol Air/tumbler/botol minuman | ขวดน้ำ/กระบอกน้ำ/แก้วเก็บความเย็น | Bình nước/bình giữ nhiệt/bình nước uống | Water Bottle/tumbler/tubigan",
         "ml", True, "", "stainless plastic glass", "Lock&Lock,Tupperware,Hydro Flask,Tiger,Aqua Flask,Zojirushi"),
    _cat("phone_case", "Phone Case/case/casing/cover | Casing HP/case hp/softcase/casing | Sarung Telefon/casing phone/case | เคสโทรศัพท์/เคสมือถือ/เคส | Ốp lưng điện thoại/ốp lưng/ốp điện thoại | Phone Case/case ng cellphone/case/cover",
         "phone", True, "", "silicone leather plastic", "Spigen,Baseus,Ugreen,Nillkin,Ringke"),
    _cat("pan", "Frying Pan/pan/skillet/wok | Wajan/teflon/penggorengan/frying pan | Kuali/frying pan/kuali leper | กระทะ/กระทะทอด | Chảo/chảo chiên/chảo rán | Kawali/frying pan/pan",
         "cm", True, "", "nonstick castiron stainless", "Tefal,Lock&Lock,Maxim,Supra,Happycall,Sunhouse"),
    _cat("fan", "Electric Fan/stand fan/fan | Kipas Angin/kipas/kipas berdiri | Kipas Angin/kipas berdiri/kipas | พัดลม/พัดลมตั้งพื้น | Quạt điện/quạt đứng/quạt | Electric Fan/bentilador/stand fan",
         "inch", True, "", "", "Panasonic,Miyako,Cosmos,Hatari,KDK,Senko,Asahi"),
    _cat("bedsheet", "Bedsheet Set/bed sheet/fitted sheet | Sprei/seprai/sprei set/bedcover | Cadar/cadar katil/bedsheet | ผ้าปูที่นอน/ชุดผ้าปู | Ga giường/drap giường/bộ ga gối | Bedsheet/kobre kama/bed sheet/sapin",
         "bed", True, "", "cotton polyester", "Lady Rose,Akemi,Jessica,Uratex,Everon,IKEA"),
    _cat("face_wash", "Facial Cleanser/face wash/facial wash | Sabun Cuci Muka/facial wash/sabun muka/pembersih wajah | Pencuci Muka/facial wash/sabun muka | โฟมล้างหน้า/ล้างหน้า | Sữa rửa mặt/srm/sua rua mat | Facial Wash/panghilamos/face wash",
         "ml_small", False, "men women", "", "Garnier,Cetaphil,Wardah,Pond's,Senka,Nivea"),
    _cat("diapers", "Baby Diapers/diapers/nappies/pampers | Popok Bayi/popok/pampers/diapers | Lampin Bayi/lampin pakai buang/diapers | ผ้าอ้อมเด็ก/แพมเพิส/ผ้าอ้อมสำเร็จรูป | Tã em bé/bỉm/tã dán | Diaper/diapers/lampin",
         "apparel", False, "", "", "MamyPoko,Pampers,Huggies,Merries,Sweety,EQ"),
    _cat("earbuds", "Wireless Earbuds/earbuds/tws/bluetooth earphones | Earphone Bluetooth/headset/tws/earbuds | Fon Telinga Bluetooth/earphone/earbuds | หูฟังบลูทูธ/หูฟังไร้สาย/หูฟัง | Tai nghe bluetooth/tai nghe không dây/tai nghe | Wireless Earphones/earphones/headset",
         None, True, "", "", "JBL,Sony,Xiaomi,Baseus,Soundcore,Samsung"),
)

# Words sellers add to titles and shoppers add to queries; they never change relevance.
TITLE_EXTRAS = _row("Original/New/Premium/Best Seller | Original/Murah/Promo/Ready Stock/COD | Ready Stock/Murah/Original/Borong | ของแท้/ราคาถูก/พร้อมส่ง/ส่งฟรี | Chính hãng/Giá rẻ/Freeship/Hàng mới | Original/Sale/Murang/COD")
QUERY_EXTRAS = _row("cheap/best/original/sale | murah/ori/terbaru/bagus | murah/ready stock/original | ราคาถูก/ของแท้/ถูกๆ | giá rẻ/chính hãng/rẻ | murang/mura/sale/legit")
# Shoppers' habitual misspellings of English words sellers use (applied before random typos).
MISSPELLINGS = {"iphone": "ipone", "samsung": "samsun", "blender": "blander", "backpack": "bagpack", "stainless": "stenlis",
                "sneakers": "snikers", "cooker": "coker", "earphone": "earphon", "tumbler": "tumblr", "wireless": "wirelles",
                "leather": "lether", "diapers": "dipers", "cotton": "coton", "yellow": "yelow", "bottle": "botle"}
